"""Cross-validation of knnspark estimators that searches neighbors once per fold and group.

:class:`KNNCrossValidator` is a drop-in for :class:`pyspark.ml.tuning.CrossValidator`. The
package is layered as the rest of knnspark:

- :mod:`~knnspark.tuning.validator`: :class:`KNNCrossValidator` and
  :class:`KNNCrossValidatorModel` (checks, folds, the fit loop, the result).
- :mod:`~knnspark.tuning.grouping`: param maps that differ only in ``k``, ``weights`` or
  ``classWeights`` share one fit and one search (:func:`group_param_maps`).
- :mod:`~knnspark.tuning.evaluation`: each group's metrics for one fold, from sums of the
  scoring pass for Spark's built-in evaluators or by calling the evaluator otherwise.
- :mod:`~knnspark.tuning.scoring`: the executor side (``mapInArrow`` functions) that scores
  every param map of a group from one neighbor list.

The numpy formulas of Spark's evaluator metrics are :mod:`knnspark.kernels.metric_sums`.
The public names load on first use, so that a worker unpickling a scoring function imports
:mod:`~knnspark.tuning.scoring` without ``pyspark.ml.tuning`` and pandas.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from knnspark.tuning.evaluation import evaluator_redirects, fast_metric
    from knnspark.tuning.grouping import SCORING_PARAMS, group_param_maps
    from knnspark.tuning.validator import KNNCrossValidator, KNNCrossValidatorModel

#: Public name -> the module that defines it.
_EXPORTS = {
    "SCORING_PARAMS": "knnspark.tuning.grouping",
    "KNNCrossValidator": "knnspark.tuning.validator",
    "KNNCrossValidatorModel": "knnspark.tuning.validator",
    "evaluator_redirects": "knnspark.tuning.evaluation",
    "fast_metric": "knnspark.tuning.evaluation",
    "group_param_maps": "knnspark.tuning.grouping",
}

__all__ = [
    "SCORING_PARAMS",
    "KNNCrossValidator",
    "KNNCrossValidatorModel",
    "evaluator_redirects",
    "fast_metric",
    "group_param_maps",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'knnspark.tuning' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
