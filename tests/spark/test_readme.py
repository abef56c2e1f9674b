"""The README's quick start runs as written and does what it says."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def _quick_start() -> str:
    text = README.read_text()
    section = text.split("## Quick start", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_quick_start_runs(spark):
    code = _quick_start()
    assert len(code.strip().splitlines()) <= 16
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    scored = namespace["scored"].orderBy("label").collect()
    assert [r["prediction"] for r in scored] == [0.0, 0.0, 1.0, 1.0, 1.0]
    assert scored[0]["probability"].toArray().tolist() == [1.0, 0.0]
    reloaded = namespace["same"].transform(namespace["train"]).orderBy("label").collect()
    assert [r["prediction"] for r in reloaded] == [r["prediction"] for r in scored]
    neighbors = namespace["neighbors"]
    assert neighbors.columns == ["features", "label", "neighbor_ids", "distances"]
    first = neighbors.first()
    assert first["distances"][0] == 0.0
