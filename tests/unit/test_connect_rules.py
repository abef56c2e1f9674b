"""knnspark/ runs on Spark Connect: classic-only APIs appear only in knnspark/classic.py.

A scan of the code's tokens (strings and comments do not count): no ``sparkContext``, no
``.rdd``, no ``_jvm``/``_jsc``/``_jsparkSession``/``py4j``, and no call of a ``broadcast``
other than the DataFrame join hint ``F.broadcast(df)`` (fine on Connect) and the classic
module's own ``classic.broadcast``.
"""

from __future__ import annotations

import io
import tokenize
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "knnspark"
CLASSIC_MODULE = PACKAGE / "classic.py"
FORBIDDEN_NAMES = {"sparkContext", "_jvm", "_jsc", "_jsparkSession", "py4j"}


def classic_only_uses(source: str) -> list[tuple[int, str]]:
    """(line, what) of each classic-only API the source touches."""
    names = [
        t
        for t in tokenize.generate_tokens(io.StringIO(source).readline)
        if t.type in (tokenize.NAME, tokenize.OP)
    ]
    found = []
    for i, tok in enumerate(names):
        before = names[i - 1].string if i else ""
        after = names[i + 1].string if i + 1 < len(names) else ""
        if tok.string in FORBIDDEN_NAMES:
            found.append((tok.start[0], tok.string))
        elif tok.string == "rdd" and before == ".":
            found.append((tok.start[0], ".rdd"))
        elif tok.string == "broadcast" and after == "(":
            # F.broadcast is the join hint; classic.broadcast, the classic module's own.
            allowed = before == "." and i >= 2 and names[i - 2].string in ("F", "classic")
            if not allowed:
                found.append((tok.start[0], "broadcast("))
    return found


def test_the_scan_sees_each_api_and_spares_the_join_hint():
    source = (
        "sc = spark.sparkContext\nn = df.rdd.getNumPartitions()\nspark._jvm.x\nsc._jsc\n"
        "s._jsparkSession\nimport py4j\nsc.broadcast(v)\nbroadcast(v)\nF.broadcast(df)\n"
        "# sparkContext in a comment\nx = 'df.rdd in a string'\n"
    )
    assert [what for _, what in classic_only_uses(source)] == [
        "sparkContext",
        ".rdd",
        "_jvm",
        "_jsc",
        "_jsparkSession",
        "py4j",
        "broadcast(",
        "broadcast(",
    ]


def test_classic_only_apis_live_in_the_classic_module():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == CLASSIC_MODULE:
            continue
        relative = path.relative_to(PACKAGE).as_posix()
        for line, what in classic_only_uses(path.read_text()):
            offenders.append(f"knnspark/{relative}:{line}: {what}")
    assert offenders == [], (
        "Spark Connect has no SparkContext, RDDs, broadcast variables or py4j; move these "
        "into knnspark/classic.py, chosen by classic.is_connect(session):\n" + "\n".join(offenders)
    )
