"""Estimator and Model bases shared by the classifier, regressor and neighbor search."""

from __future__ import annotations

from typing import Any

import numpy as np
from pyspark.ml import Estimator, Model
from pyspark.ml.functions import array_to_vector
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable, MLReadable, MLWritable
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from knnspark import classic
from knnspark.classic import is_connect
from knnspark.errors import InvalidInputError
from knnspark.groups import check_group_params, query_group_columns
from knnspark.index import EXACT_KIND, IndexSpec, TrainingIndex, build_index, kind_param_names
from knnspark.kmeans_sharding import check_partitioning, search_router
from knnspark.kneighbors import KNeighborsMixin
from knnspark.partition import (
    CLASSIFICATION,
    NDIST_TMP,
    NEIGHBORS,
    NIDS_TMP,
    NLAB_TMP,
    PRED_TMP,
    PROBA_TMP,
    RAW_TMP,
    REGRESSION,
    SHARDS_TMP,
    SearchSettings,
)
from knnspark.radius import RadiusNeighborsMixin
from knnspark.schema import check_output_columns, feature_array_expr
from knnspark.search import search_dataframe
from knnspark.shipped import ShippedShards
from knnspark.sizing import (
    CONNECT_SHIPPED_BYTES,
    broadcast_bytes,
    choose_storage,
    default_num_shards,
)

__all__: list[str] = []


class _KNNEstimator(Estimator, DefaultParamsReadable, DefaultParamsWritable):
    """Fits a :class:`TrainingIndex` and wraps it in the matching model."""

    #: What the fitted model computes: CLASSIFICATION, REGRESSION or NEIGHBORS.
    _task = NEIGHBORS

    def _create_model(self, index: TrainingIndex) -> _KNNModel:
        raise NotImplementedError

    def _fit(self, dataset: DataFrame) -> _KNNModel:
        self._check_params()
        session = dataset.sparkSession
        num_shards = self.getNumShards() or default_num_shards(session)
        check_partitioning(
            self.getPartitioning(),
            self.getNprobe(),
            int(num_shards),
            self.getMetric(),
            self.getImputeStrategy(),
        )
        label_col = self.getLabelCol() if self._task != NEIGHBORS else None
        check_group_params(
            self.getGroupCol(),
            self.getFeaturesCol(),
            label_col,
            self.getIdCol(),
            self.getPartitioning(),
        )
        spec = IndexSpec(
            features_col=self.getFeaturesCol(),
            label_col=self.getLabelCol() if self._task != NEIGHBORS else None,
            id_col=self.getIdCol(),
            classifier=self._task == CLASSIFICATION,
            num_shards=int(num_shards),
            k=self.getK(),
            handle_invalid=self.getHandleInvalid(),
            max_broadcast_bytes=self.getMaxBroadcastBytes(),
            algorithm=self.getAlgorithm(),
            metric=self.getMetric(),
            ef=self.getEf(),
            kind_values={name: self.getOrDefault(name) for name in kind_param_names()},
            max_shard_bytes=self.getMaxShardBytes(),
            impute_strategy=self.getImputeStrategy(),
            standardization=self.getStandardization(),
            p=float(self.getP()),
            partitioning=self.getPartitioning(),
            seed=int(self.getSeed()),
            nprobe=self.getNprobe(),
            connect=is_connect(session),
            group_col=self.getGroupCol(),
        )
        index = build_index(dataset, spec)
        model = self._copyValues(self._create_model(index))
        model._class_weights()  # a mapping that names unknown classes fails here
        return model


class _KNNModel(KNeighborsMixin, RadiusNeighborsMixin, Model, MLWritable, MLReadable):
    """A fitted index plus the search-time params; searches with ``transform``/``kneighbors``.

    The queries themselves live in sibling mixins (as scikit-learn's ``KNeighborsMixin`` and
    ``RadiusNeighborsMixin``): :mod:`knnspark.kneighbors` and :mod:`knnspark.radius`; this
    class holds what they share: the fitted index, ``_search`` and the shipped shards.
    """

    #: What ``transform`` computes: CLASSIFICATION, REGRESSION or NEIGHBORS.
    _task = NEIGHBORS

    def __init__(self, index: TrainingIndex | None = None) -> None:
        super().__init__()
        self._index = index
        self._broadcast: tuple[Any, str, Any] | None = None

    # ------------------------------------------------------------ fitted state

    @property
    def index(self) -> TrainingIndex:
        if self._index is None:
            raise ValueError(f"{type(self).__name__} has no fitted index; fit or load it first.")
        return self._index

    @property
    def numFeatures(self) -> int:
        """Length of the feature vectors the model was trained on."""
        return self.index.n_features

    @property
    def numTrainingRows(self) -> int:
        """Number of training rows in the index (after ``handleInvalid='skip'``)."""
        return self.index.n_rows

    @property
    def shardSizes(self) -> dict[int, int]:
        """Rows per shard, by shard number."""
        return dict(self.index.shard_sizes)

    @property
    def storage(self) -> str:
        """``"broadcast"`` or ``"distributed"``: how queries reach the shards."""
        return self.index.storage

    @property
    def modelId(self) -> str:
        """Unique id of this fitted index (a UUID made at fit, saved in the metadata)."""
        return self.index.model_id

    @property
    def algorithmUsed(self) -> str:
        """``"brute"`` or ``"hnsw"``: what ``fit`` built (``algorithm="auto"`` chooses)."""
        return self.index.kind

    @property
    def indexSizeBytes(self) -> int:
        """Bytes of the index: float32 features, ids and labels, plus any HNSW graphs.

        Exact part: ``n_rows * (4 * n_features + 16)``.  HNSW graphs: their
        serialized size, predicted before the build by
        ``n_rows * (4 * n_features + 8 * M + 24)`` (see
        :func:`knnspark.kernels.hnsw.estimate_hnsw_bytes`).
        """
        return self.index.size_bytes

    # ------------------------------------------------------------ search

    def _search(
        self,
        dataset: DataFrame,
        task: str,
        with_neighbors: bool,
        k: int | None = None,
        features: Column | None = None,
    ) -> DataFrame:
        """Search ``dataset``; ``features`` (``array<float>``) skips preprocessing.

        ``features`` is for rows already in the index's space, such as the index's own
        training rows (:class:`knnspark.outliers.KNNOutlierModel` scores them at fit).
        """
        self._check_params()
        index = self.index
        index.preprocessing.check_metric(self.getMetric())
        k = self.getK() if k is None else int(k)
        if k > index.n_rows:
            raise InvalidInputError(
                f"Param k must be <= the number of training rows ({index.n_rows}); got {k}."
            )
        features_column = None
        if features is None:
            # Fails early on a missing or mistyped features column.
            raw = feature_array_expr(dataset.schema, self.getFeaturesCol())
            features = index.preprocessing.apply(raw)
            dtype = dataset.schema[self.getFeaturesCol()].dataType
            float_array = isinstance(dtype, T.ArrayType) and isinstance(
                dtype.elementType, T.FloatType
            )
            if index.preprocessing.is_identity and float_array:
                features_column = self.getFeaturesCol()  # the search reads it as it is
        kind = self._search_kind()
        visited_col = self.getShardsVisitedCol()
        if visited_col is not None:
            check_output_columns(dataset.schema, {"shardsVisitedCol": visited_col})
        router = search_router(index.router, self.getNprobe(), self.getMetric(), self.getP())
        group_columns = None
        if index.groups is not None:
            group_columns = query_group_columns(
                dataset.schema, self.getGroupCol(), index.groups, "the query DataFrame"
            )
        settings = SearchSettings(
            task=task,
            kind=kind,
            kind_params=index.kind_params,
            ef=self.getEf(),
            model_id=index.model_id,
            k=k,
            metric=self.getMetric(),
            p=float(self.getP()),
            n_features=index.n_features,
            features_col=self.getFeaturesCol(),
            handle_invalid=self.getHandleInvalid(),
            weights=self.getOrDefault("weights") if self.hasParam("weights") else "uniform",
            bandwidth=self.getOrDefault("bandwidth") if self.hasParam("bandwidth") else None,
            classes=tuple(float(c) for c in index.classes) if index.classes is not None else (),
            class_weights=self._class_weights(),
            with_neighbors=with_neighbors,
            router=router,
            nprobe=self.getNprobe(),
            shards_visited=visited_col is not None,
            groups=index.groups,
        )
        shipped = None
        if index.storage == "broadcast":
            shipped = self._shipped_shards(dataset.sparkSession, kind)
        searched = search_dataframe(
            dataset, index, settings, shipped, features, group_columns, features_column
        )
        if visited_col is not None:
            searched = searched.withColumnRenamed(SHARDS_TMP, visited_col)
        return searched

    def _class_weights(self) -> tuple[float, ...]:
        """Per-class vote weights aligned with the classes; () when unweighted."""
        return ()

    def _search_kind(self) -> str:
        """The index kind a search uses: exact on request, otherwise what fit built."""
        requested, built = self.getAlgorithm(), self.index.kind
        if requested == EXACT_KIND:
            return EXACT_KIND
        if requested not in ("auto", built):
            raise ValueError(
                f"Param algorithm is {requested!r} but this model was fitted with "
                f"algorithmUsed={built!r}; refit with algorithm={requested!r} to build that "
                f"index, or search with algorithm={built!r} or {EXACT_KIND!r}."
            )
        built_metric = self.index.kind_params.get("metric")
        if built_metric is not None and self.getMetric() != built_metric:
            raise ValueError(
                f"Param metric is {self.getMetric()!r} but this model's {built} index was "
                f"built for {built_metric!r}; set algorithm={EXACT_KIND!r} to search with "
                "another metric."
            )
        return built

    def _shipped_shards(self, session: Any, kind: str) -> Any:
        """The shards of ``kind`` as every search task reaches them, made once per session.

        A classic session broadcasts them, or in local mode maps them from one file
        (:func:`knnspark.classic.shard_handle`); Spark Connect has no broadcast variables, so
        they travel inside the search function (:class:`knnspark.shipped.ShippedShards`).
        """
        cached = self._broadcast
        if cached is not None and cached[0] is session and cached[1] == kind:
            if is_connect(session) or classic.is_alive(session):
                return cached[2]
        shards = self.index.shards[kind]
        if is_connect(session):
            index = self.index
            size = broadcast_bytes(index.n_rows, index.n_features, index.payload_bytes)
            if choose_storage(size, self.getMaxBroadcastBytes(), connect=True) != "broadcast":
                raise InvalidInputError(
                    f"This model holds its shards on the driver ({size / 2**20:.0f} MiB), over "
                    f"the {CONNECT_SHIPPED_BYTES / 2**20:.0f} MiB a search may ship on Spark "
                    "Connect; save it and load it in the Connect session (a loaded model that "
                    "large is searched by the distributed path), or refit it there."
                )
            handle: Any = ShippedShards(self.index.model_id, kind, shards)
        else:
            handle = classic.shard_handle(session, shards)
        self._broadcast = (session, kind, handle)
        return handle

    def _supervised_transform(self, dataset: DataFrame, classify: bool) -> DataFrame:
        outputs = {"predictionCol": self.getPredictionCol()}
        if classify:
            outputs["rawPredictionCol"] = self.getRawPredictionCol()
            outputs["probabilityCol"] = self.getProbabilityCol()
        outputs["neighborsCol"] = self.getNeighborsCol()
        check_output_columns(dataset.schema, outputs)
        with_neighbors = self.getNeighborsCol() is not None
        searched = self._search(dataset, CLASSIFICATION if classify else REGRESSION, with_neighbors)
        renames = {PRED_TMP: self.getPredictionCol()}
        out = searched.withColumnsRenamed(renames)
        if classify:
            raw, proba = F.col(RAW_TMP), F.col(PROBA_TMP)
            out = out.withColumns(
                {
                    self.getRawPredictionCol(): F.when(raw.isNotNull(), array_to_vector(raw)),
                    self.getProbabilityCol(): F.when(proba.isNotNull(), array_to_vector(proba)),
                }
            ).drop(RAW_TMP, PROBA_TMP)
        if with_neighbors:
            out = out.withColumn(
                self.getNeighborsCol(),
                F.transform(
                    F.col(NIDS_TMP),
                    lambda x, i: F.struct(
                        x.alias("id"),
                        F.col(NDIST_TMP)[i].alias("distance"),
                        F.col(NLAB_TMP)[i].alias("label"),
                    ),
                ),
            ).drop(NIDS_TMP, NDIST_TMP, NLAB_TMP)
        return out

    # ------------------------------------------------------------ persistence

    def _fitted_state(self) -> dict[str, Any]:
        """What ``fit`` learned besides the index, as JSON values (saved in the metadata)."""
        return {}

    def _restore_fitted_state(self, state: dict[str, Any], path: str) -> None:
        """Take back :meth:`_fitted_state` at load; raise ``ModelLoadError`` if it is damaged."""

    def write(self) -> Any:
        from knnspark.persistence import KNNModelWriter

        return KNNModelWriter(self)

    @classmethod
    def read(cls) -> Any:
        from knnspark.persistence import KNNModelReader

        return KNNModelReader(cls)

    def __repr__(self) -> str:
        if self._index is None:
            return f"{type(self).__name__}(uid={self.uid}, unfitted)"
        return (
            f"{type(self).__name__}(uid={self.uid}, k={self.getK()}, metric={self.getMetric()}, "
            f"rows={self.index.n_rows}, features={self.index.n_features}, "
            f"shards={self.index.num_shards}, algorithm={self.index.kind}, "
            f"storage={self.index.storage})"
        )


def classes_array(index: TrainingIndex) -> np.ndarray:
    if index.classes is None:
        raise ValueError("This model has no classes.")
    return index.classes.copy()
