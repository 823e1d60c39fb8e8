"""The alias index: every normalised name of every entity, built once with the KG, mapped by every linker.

On disk (in `arrays/`): `alias.off.npy` + `alias.bytes.npy`, the distinct normalised names in sorted
order; `alias_ptr.npy`, where each name's entities start in `alias_ids.npy`; `alias_ids.npy`, the
entity ids of each name already in the linker's preference order (named by the alias itself first,
common nouns before proper names, best connected first, then id). A lookup is one binary search over
the mapped bytes, so an actor holds no per-name Python object however many names the KG has.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kale_ray.kg.arrays import StringTable, load_array, save_array
from kale_ray.kg.normalize import normalize

NAME_SCHEMA = pa.schema([("norm", pa.large_string()), ("eid", pa.int64()), ("not_label", pa.bool_()),
                         ("upper", pa.bool_())])


def name_rows(ids: np.ndarray, keys: list[str], labels: list[str | None], aliases: list[list[str] | None]) -> pa.Table:
    """One row per (normalised name, entity): the key, the label and every alias of each entity."""
    norms: list[str] = []
    eids: list[int] = []
    not_label: list[bool] = []
    upper: list[bool] = []
    for eid, key, label, more in zip(ids.tolist(), keys, labels, aliases, strict=True):
        label = label or ""
        own = normalize(label)
        first_upper = label[:1].isupper()
        names = {normalize(name or "") for name in {key, label, *(more or [])}}
        for norm in sorted(names):
            if norm:
                norms.append(norm)
                eids.append(eid)
                not_label.append(norm != own)
                upper.append(first_upper)
    return pa.table({"norm": pa.array(norms, pa.large_string()), "eid": pa.array(eids, pa.int64()),
                     "not_label": pa.array(not_label, pa.bool_()), "upper": pa.array(upper, pa.bool_())},
                    schema=NAME_SCHEMA)


@dataclass
class AliasIndex:
    names: StringTable   # distinct normalised names, sorted
    ptr: np.ndarray      # int64, len(names) + 1
    ids: np.ndarray      # int64 entity ids, ranked per name
    max_tokens: int

    @classmethod
    def build(cls, rows: pa.Table, degree: np.ndarray | None) -> AliasIndex:
        """Rank the (name, entity) rows of one range of names (or all of them) into an index; the
        entities' degrees come from `degree` or from the rows' own `degree` column."""
        if "degree" not in rows.column_names:
            eids = rows.column("eid").to_numpy()
            rows = rows.append_column("degree", pa.array(np.asarray(degree)[eids].astype(np.int64)
                                                         if rows.num_rows else np.zeros(0, np.int64), pa.int64()))
        rows = rows.sort_by([("norm", "ascending"), ("not_label", "ascending"), ("upper", "ascending"),
                             ("degree", "descending"), ("eid", "ascending")])
        norm = rows.column("norm").combine_chunks() if rows.num_rows else pa.array([], pa.large_string())
        first = np.ones(len(norm), bool)
        if len(norm) > 1:
            first[1:] = pc.not_equal(norm.slice(1), norm.slice(0, len(norm) - 1)).to_numpy(zero_copy_only=False)
        starts = np.flatnonzero(first)
        names = norm.filter(pa.array(first))
        ptr = np.append(starts, len(norm)).astype(np.int64)
        tokens = pc.max(pc.add(pc.count_substring(names, " "), 1)).as_py() if len(names) else 1
        return cls(StringTable.from_values(names), ptr,
                   rows.column("eid").to_numpy().astype(np.int64) if rows.num_rows else np.zeros(0, np.int64),
                   int(tokens or 1))

    @classmethod
    def load(cls, directory: Path, max_tokens: int) -> AliasIndex:
        directory = Path(directory)
        return cls(StringTable.load(directory, "alias"), load_array(directory / "alias_ptr.npy"),
                   load_array(directory / "alias_ids.npy"), max_tokens)

    def save(self, directory: Path) -> None:
        self.names.save(directory, "alias")
        save_array(Path(directory) / "alias_ptr.npy", self.ptr)
        save_array(Path(directory) / "alias_ids.npy", self.ids)

    def __len__(self) -> int:
        return len(self.names)

    def get(self, norm: str) -> np.ndarray | None:
        """The ranked entity ids named `norm`, or None."""
        pos = self.names.index_sorted(norm)
        if pos < 0:
            return None
        return self.ids[self.ptr[pos]: self.ptr[pos + 1]]

    def get_many(self, norms: list[str]) -> list[np.ndarray | None]:
        """`get` for many names in one compiled call (a question's candidate spans at once)."""
        if not norms:
            return []
        pos = self.names.lookup_many(pa.array(norms, pa.large_string()))
        return [self.ids[self.ptr[p]: self.ptr[p + 1]] if p >= 0 else None for p in pos.tolist()]
