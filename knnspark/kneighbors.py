"""``model.kneighbors`` and ``model.neighborLabels``: each query row's k nearest training rows.

A mixin of every fitted model (:class:`knnspark.base._KNNModel`), as scikit-learn's
``KNeighborsMixin`` sits beside its ``RadiusNeighborsMixin``
(:class:`knnspark.radius.RadiusNeighborsMixin`): both search through the model's shared
machinery (``_search``, the fitted index, the params).  ``excludeSelf`` leaves a query row
out of its own list (:mod:`knnspark.leave_out`).
"""

from __future__ import annotations

from pyspark.sql import DataFrame

from knnspark.leave_out import check_exclude_self, exclude_self
from knnspark.partition import NDIST_TMP, NEIGHBOR_LABELS, NEIGHBORS, NIDS_TMP, NLAB_TMP
from knnspark.schema import check_output_columns, column

__all__ = ["KNeighborsMixin"]


class KNeighborsMixin:
    """``kneighbors`` and ``neighborLabels`` of a fitted model."""

    def kneighbors(
        self,
        dataset: DataFrame,
        neighborIdsCol: str = "neighbor_ids",
        distancesCol: str = "distances",
        excludeSelf: bool = False,
    ) -> DataFrame:
        """Every column of ``dataset`` plus the k nearest training ids and their distances.

        With ``excludeSelf=True`` a query row is not its own neighbor: a query whose
        ``idCol`` value is a training id gets the k nearest *other* training rows, as
        scikit-learn's ``kneighbors()`` without ``X`` (a kNN graph of the training rows:
        ``model.kneighbors(train, excludeSelf=True)``). It needs ``idCol`` set at fit and
        that column in ``dataset``, and ``k`` below the number of training rows.

        Returns
        -------
        DataFrame
            ``neighborIdsCol`` is ``array<long>`` and ``distancesCol`` is
            ``array<double>``, nearest first (ties to the smaller id); both are
            null for invalid query rows under ``handleInvalid='keep'``.
        """
        check_output_columns(
            dataset.schema, {"neighborIdsCol": neighborIdsCol, "distancesCol": distancesCol}
        )
        k = self.getK()
        if excludeSelf:
            check_exclude_self(dataset.schema, self.getIdCol(), self.index.n_rows, k)
        searched = self._search(dataset, NEIGHBORS, with_neighbors=False, k=k + bool(excludeSelf))
        if excludeSelf:
            searched = exclude_self(searched, NIDS_TMP, NDIST_TMP, column(self.getIdCol()), k)
        return searched.withColumnsRenamed({NIDS_TMP: neighborIdsCol, NDIST_TMP: distancesCol})

    def neighborLabels(self, dataset: DataFrame, k: int | None = None) -> DataFrame:
        """Every column of ``dataset`` plus its ``k`` nearest neighbors' labels and distances.

        For tuning: :class:`knnspark.tuning.KNNCrossValidator` searches once at the
        largest ``k`` and scores every smaller ``k`` from these lists.

        Returns
        -------
        DataFrame
            ``neighbor_labels`` and ``neighbor_distances`` (``array<double>``,
            nearest first); null for invalid rows under ``handleInvalid='keep'``.
        """
        check_output_columns(
            dataset.schema,
            {"neighbor_labels": "neighbor_labels", "neighbor_distances": "neighbor_distances"},
        )
        searched = self._search(dataset, NEIGHBOR_LABELS, with_neighbors=False, k=k)
        return searched.withColumnsRenamed(
            {NLAB_TMP: "neighbor_labels", NDIST_TMP: "neighbor_distances"}
        )
