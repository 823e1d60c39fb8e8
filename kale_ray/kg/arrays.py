"""On-disk arrays of the KG artifact, memory-mapped so that every actor on a node shares one copy.

Numbers are `.npy` files opened with `np.load(mmap_mode="r")`: the pages live in the OS page cache,
not in each process, so a second actor costs page-table entries, not a copy. Strings are a pair of
`.npy` files, `<name>.off.npy` (int64 offsets, n + 1) and `<name>.bytes.npy` (UTF-8 bytes), the layout
of an Arrow string column that numpy can map and numba can search. Sorted string tables are searched
by byte-wise binary search (UTF-8 byte order is code-point order, the order Python and Arrow sort in).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

try:
    from numba import njit
except ImportError:  # pragma: no cover - numba is a core dependency
    def njit(*args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        return args[0] if args and callable(args[0]) else (lambda f: f)

ARRAYS = "arrays"


def save_array(path: Path, values: np.ndarray) -> None:
    """Write an .npy atomically (a reader never maps half a file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, np.ascontiguousarray(values))
    tmp.replace(path)


def load_array(path: Path) -> np.ndarray:
    """A view mapped from disk (a plain ndarray, which numba kernels accept). Copy-on-write, not
    read-only: nothing writes to it, so its pages stay the shared page-cache pages, and the numba
    kernels see the same array type as in-memory arrays (one compiled version, not two)."""
    return np.asarray(np.load(path, mmap_mode="c"))


def create_array(path: Path, dtype: np.dtype | type, length: int) -> None:
    """An .npy of `length` zeros on disk, for tasks that fill disjoint slices of it in parallel."""
    np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(length,)).flush()


def fill_array(path: Path, offset: int, values: np.ndarray) -> None:
    if len(values):
        mm = np.load(path, mmap_mode="r+")
        mm[offset: offset + len(values)] = values
        mm.flush()
        del mm


def arrow_strings(values: pa.Array | pa.ChunkedArray | Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(offsets int64 starting at 0, UTF-8 bytes uint8) of a string column, nulls as empty strings."""
    if not isinstance(values, pa.Array | pa.ChunkedArray):
        values = pa.array(values, pa.large_string())
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], pa.large_string())
    arr = pc.fill_null(values.cast(pa.large_string()), "")
    if len(arr) == 0:
        return np.zeros(1, np.int64), np.zeros(0, np.uint8)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset: arr.offset + len(arr) + 1]
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8) if arr.buffers()[2] is not None else np.zeros(0, np.uint8)
    start, end = int(offsets[0]), int(offsets[-1])
    return (offsets - start).astype(np.int64), np.array(data[start:end])  # writable, as a mapped table is


class StringTable(Sequence[str]):
    """n strings as offsets + bytes (in memory or mapped from disk); `table[i]` decodes one."""

    def __init__(self, off: np.ndarray, data: np.ndarray) -> None:
        self.off, self.data = off, data

    @classmethod
    def from_values(cls, values: pa.Array | pa.ChunkedArray | Sequence[str]) -> StringTable:
        return cls(*arrow_strings(values))

    @classmethod
    def load(cls, directory: Path, name: str) -> StringTable:
        return cls(load_array(Path(directory) / f"{name}.off.npy"), load_array(Path(directory) / f"{name}.bytes.npy"))

    def save(self, directory: Path, name: str) -> None:
        save_array(Path(directory) / f"{name}.off.npy", self.off)
        save_array(Path(directory) / f"{name}.bytes.npy", self.data)

    def __len__(self) -> int:
        return len(self.off) - 1

    def __getitem__(self, i):  # noqa: ANN001, ANN204 - int -> str, slice -> list[str]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.data[self.off[i]: self.off[i + 1]].tobytes().decode("utf-8")

    def __iter__(self) -> Iterator[str]:
        return (self[i] for i in range(len(self)))

    def index_sorted(self, query: str, order: np.ndarray | None = None) -> int:
        """Position of `query` in this table's sorted order (by `order` if given), or -1."""
        q = np.frombuffer(query.encode("utf-8"), dtype=np.uint8)
        return int(find_sorted(self.off, self.data, order if order is not None else _NO_ORDER, q))

    def lookup_many(self, queries: pa.Array | pa.ChunkedArray, order: np.ndarray | None = None) -> np.ndarray:
        """Sorted positions of many queries at once (-1 where absent): the join of a shard's keys."""
        qoff, qdata = arrow_strings(queries)
        return find_many(self.off, self.data, order if order is not None else _NO_ORDER, qoff, qdata)


_NO_ORDER = np.zeros(0, np.int64)


@njit(cache=True)
def _compare(data: np.ndarray, a: int, b: int, q: np.ndarray, qa: int, qb: int) -> int:
    la, lq = b - a, qb - qa
    m = la if la < lq else lq
    for k in range(m):
        x, y = data[a + k], q[qa + k]
        if x != y:
            return -1 if x < y else 1
    if la == lq:
        return 0
    return -1 if la < lq else 1


@njit(cache=True)
def _find(off: np.ndarray, data: np.ndarray, order: np.ndarray, q: np.ndarray, qa: int, qb: int) -> int:
    n = off.shape[0] - 1
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) // 2
        idx = order[mid] if order.shape[0] else mid
        if _compare(data, off[idx], off[idx + 1], q, qa, qb) < 0:
            lo = mid + 1
        else:
            hi = mid
    if lo < n:
        idx = order[lo] if order.shape[0] else lo
        if _compare(data, off[idx], off[idx + 1], q, qa, qb) == 0:
            return lo
    return -1


@njit(cache=True)
def find_sorted(off: np.ndarray, data: np.ndarray, order: np.ndarray, q: np.ndarray) -> int:
    return _find(off, data, order, q, 0, q.shape[0])


@njit(cache=True)
def find_many(off: np.ndarray, data: np.ndarray, order: np.ndarray, qoff: np.ndarray, qdata: np.ndarray) -> np.ndarray:
    out = np.empty(qoff.shape[0] - 1, np.int64)
    for i in range(qoff.shape[0] - 1):
        out[i] = _find(off, data, order, qdata, qoff[i], qoff[i + 1])
    return out


def unique_edges(src: np.ndarray, dst: np.ndarray, ids: np.ndarray,
                 back: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The CSR's edges: no self-loops, sorted by (src, dst), one edge per node pair (a forward edge
    before a backward one, then the lowest statement id), so every build gives the same graph."""
    keep = src != dst
    src, dst, ids, back = src[keep], dst[keep], ids[keep], back[keep]
    order = np.lexsort((ids, back, dst, src))
    src, dst, ids, back = src[order], dst[order], ids[order], back[order]
    first = np.ones(len(src), bool)
    first[1:] = (src[1:] != src[:-1]) | (dst[1:] != dst[:-1])
    return src[first], dst[first], ids[first], back[first]
