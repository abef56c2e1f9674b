"""Params of what ``fit`` and a search do to the rows first: invalid rows, NaN, scaling."""

from __future__ import annotations

from typing import Any

from pyspark.ml.param import Param, Params
from pyspark.ml.param.shared import HasHandleInvalid

from knnspark import converters as conv
from knnspark.preprocessing import IMPUTE_STRATEGIES, STANDARDIZATIONS

__all__ = ["HANDLE_INVALID_OPTIONS"]

#: Valid values of ``handleInvalid``.
HANDLE_INVALID_OPTIONS = ("error", "skip", "keep")


class _PreprocessingParams(HasHandleInvalid):
    """``handleInvalid`` (typed here, as pyspark's ``Bucketizer`` does), NaN and scaling."""

    handleInvalid: Param[str] = Param(
        Params._dummy(),
        "handleInvalid",
        "invalid rows (null, empty, wrong-length or non-finite features; null labels): "
        "'error' raises, 'skip' drops training rows, 'keep' (or 'skip') at search time gives "
        "query rows null outputs",
        typeConverter=conv.one_of("handleInvalid", HANDLE_INVALID_OPTIONS),
    )
    imputeStrategy: Param[Any] = Param(
        Params._dummy(),
        "imputeStrategy",
        "NaN entries inside vectors: None (invalid input, see handleInvalid, except for "
        "metric='nan_euclidean', which skips them), 'mean' or 'median' (of the training rows, "
        "per feature, applied to training and query rows)",
        typeConverter=conv.optional_one_of("imputeStrategy", IMPUTE_STRATEGIES),
    )
    standardization: Param[str] = Param(
        Params._dummy(),
        "standardization",
        "feature scaling fitted on the training data and applied to every query: 'none', "
        "'zscore' (mean 0, sample standard deviation 1) or 'minmax' (0..1); a constant "
        "feature maps to 0",
        typeConverter=conv.one_of("standardization", STANDARDIZATIONS),
    )

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._setDefault(handleInvalid="error", imputeStrategy=None, standardization="none")

    def setHandleInvalid(self, value: str) -> Any:
        return self._set(handleInvalid=value)

    def getImputeStrategy(self) -> str | None:
        return self.getOrDefault(self.imputeStrategy)

    def setImputeStrategy(self, value: str | None) -> Any:
        return self._set(imputeStrategy=value)

    def getStandardization(self) -> str:
        return self.getOrDefault(self.standardization)

    def setStandardization(self, value: str) -> Any:
        return self._set(standardization=value)
