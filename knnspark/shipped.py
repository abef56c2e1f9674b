"""Shards that reach the search tasks without a broadcast variable.

:class:`ShippedShards` is the broadcast path on Spark Connect, which has no broadcast
variables: an index small enough (:data:`knnspark.sizing.CONNECT_SHIPPED_BYTES`, well below
Connect's 128 MiB message limit) is pickled once on the driver into the ``mapInArrow``
function itself; every task receives those bytes, and each Python worker unpickles them once
per model and kind, then keeps the shards (and what they cache: GEMM norms, loaded HNSW
graphs) for the next tasks, as a broadcast variable's ``.value`` would.

:class:`MappedShards` is the broadcast path of a classic session in local mode: one file on
the machine every worker maps (see :func:`knnspark.classic.shard_handle`).
"""

from __future__ import annotations

import io
import mmap
import pickle
from collections import OrderedDict
from typing import Any

import numpy as np

__all__ = ["MappedShards", "ShippedShards"]

#: Per-worker cache: (model id, kind), or a mapped file's ("file", path) -> unpickled shards,
#: most recently used last.
_LOADED: OrderedDict[tuple[str, str], Any] = OrderedDict()
#: How many indexes a worker keeps unpickled (a pipeline may search two models in a task).
_CACHE_ENTRIES = 2


class ShippedShards:
    """The shards of one kind of one fitted index, as pickled bytes with a broadcast's API.

    Parameters
    ----------
    model_id, kind : str
        Name the index and the kind searched; they key the per-worker cache.
    shards : list of Shard
        The shards, pickled here, once, on the driver.
    """

    def __init__(self, model_id: str, kind: str, shards: list[Any]) -> None:
        self.key = (model_id, kind)
        self.payload = pickle.dumps(shards, protocol=pickle.HIGHEST_PROTOCOL)

    @property
    def size_bytes(self) -> int:
        return len(self.payload)

    @property
    def value(self) -> Any:
        """The shards, unpickled on the first call in this process for this model and kind."""
        shards = _LOADED.get(self.key)
        if shards is None:
            shards = pickle.loads(self.payload)
            _LOADED[self.key] = shards
            while len(_LOADED) > _CACHE_ENTRIES:
                _LOADED.popitem(last=False)
        _LOADED.move_to_end(self.key)
        return shards


class MappedShards:
    """The shards of one kind in a file every worker of this machine maps: local mode only.

    In a ``local[N]`` session the driver and the Python workers share one machine, so a
    broadcast variable only copies the shards around it: the driver pickles them, the JVM
    reads that file back into compressed blocks (2-5 s for 180 MiB at 2 cores, a block
    copy no task of a local session reads), and every worker unpickles its own copy.  Here the
    driver writes the shards' arrays once, raw, to ``path`` (the pickle keeps only a small
    header; arrays and large ``bytes`` travel out of band, pickle protocol 5), and each
    worker maps the file and rebuilds the shards over the mapped pages: no copy per worker,
    the page cache shared by all of them.  The arrays come back read-only, and large
    ``bytes`` as read-only ``memoryview``s of the file.

    Parameters
    ----------
    path : str
        Where to write the file; it must outlive every search of the shards (the caller,
        :func:`knnspark.classic.shard_handle`, puts it in the session's temporary
        directory, removed when the JVM exits).
    shards : list of Shard
    """

    def __init__(self, path: str, shards: list[Any]) -> None:
        stream = io.BytesIO()
        pickler = _OutOfBandPickler(stream)
        pickler.dump(shards)
        self.path = path
        self.header = stream.getvalue()
        offset = 0
        spans: dict[str, list[tuple[int, int]]] = {"arrays": [], "bytes": []}
        with open(path, "wb") as f:
            for group, buffers in (("arrays", pickler.arrays), ("bytes", pickler.large_bytes)):
                for buffer in buffers:
                    raw = buffer.raw()
                    offset += -offset % _ALIGN
                    f.seek(offset)
                    f.write(raw)
                    spans[group].append((offset, raw.nbytes))
                    offset += raw.nbytes
        self.spans = spans
        self.size_bytes = offset

    @property
    def value(self) -> Any:
        """The shards over the mapped file, rebuilt on the first call in this process."""
        key = ("file", self.path)
        shards = _LOADED.get(key)
        if shards is None:
            shards = self._load()
            _LOADED[key] = shards
            while len(_LOADED) > _CACHE_ENTRIES:
                _LOADED.popitem(last=False)
        _LOADED.move_to_end(key)
        return shards

    def _load(self) -> Any:
        mapped: Any = b""
        if self.size_bytes:
            with open(self.path, "rb") as f:
                mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        view = memoryview(mapped).toreadonly()
        arrays, large_bytes = (
            [view[start : start + size] for start, size in self.spans[group]]
            for group in ("arrays", "bytes")
        )
        unpickler = pickle.Unpickler(io.BytesIO(self.header), buffers=arrays)
        # Large bytes come back as the mapped pages themselves, not a copy: an HNSW graph is
        # copied once more only where hnswlib reads it.
        unpickler.persistent_load = lambda n: large_bytes[n]  # type: ignore[method-assign]
        return unpickler.load()


#: Offsets of the buffers in a :class:`MappedShards` file (a cache line; numpy needs 8).
_ALIGN = 64
#: Buffers at least this large (an HNSW graph, a shard's arrays) leave the pickle header.
_OUT_OF_BAND_BYTES = 1 << 16


class _OutOfBandPickler(pickle.Pickler):
    """Protocol 5 pickler that keeps arrays and large ``bytes`` out of the pickle.

    numpy hands contiguous arrays to ``buffer_callback`` (collected in ``arrays``); large
    ``bytes`` go by persistent id (``large_bytes``): pickle calls ``reducer_override``
    for neither ``bytes`` nor other builtins.
    """

    def __init__(self, file: io.BytesIO) -> None:
        self.arrays: list[pickle.PickleBuffer] = []
        self.large_bytes: list[pickle.PickleBuffer] = []
        super().__init__(file, protocol=5, buffer_callback=self.arrays.append)

    def persistent_id(self, obj: Any) -> Any:
        if type(obj) is bytes and len(obj) >= _OUT_OF_BAND_BYTES:
            self.large_bytes.append(pickle.PickleBuffer(obj))
            return len(self.large_bytes) - 1
        return None

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, np.ndarray) and obj.nbytes >= _OUT_OF_BAND_BYTES:
            if not (obj.flags.c_contiguous or obj.flags.f_contiguous):
                # numpy sends only contiguous arrays out of band (a strided view of labels).
                return np.ascontiguousarray(obj).__reduce_ex__(5)
        return NotImplemented
