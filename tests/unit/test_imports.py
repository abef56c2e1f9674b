"""The package's public names load on first use, and a search worker's imports stay light."""

from __future__ import annotations

import subprocess
import sys

import pytest

import knnspark
import knnspark.tuning


@pytest.mark.parametrize("package", [knnspark, knnspark.tuning])
def test_every_public_name_resolves(package):
    assert set(package.__all__) - {"__version__"} == set(package._EXPORTS)
    for name in package.__all__:
        assert getattr(package, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        package.nope  # noqa: B018


def test_worker_modules_do_not_import_the_estimators():
    # What a search or scoring task unpickles: no pyspark.ml, pandas or estimator modules.
    code = (
        "import sys, knnspark.partition, knnspark.shard_major, knnspark.tuning.scoring, "
        "knnspark.shard_codec; "
        "print(sorted(m for m in ('pyspark.ml', 'pandas', 'knnspark.base', "
        "'knnspark.tuning.validator') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
