"""A generated dump in the Wikidata JSON format, for tests and `bench/kg_scale.py` (no real dump here).

Items `Q1..Qn` with English labels and aliases drawn from a fixed pseudo-word vocabulary (so names
collide as real ones do), power-law claim counts per item (Pareto) and power-law objects (low ids are
hubs), about 10% non-item values (dates) that the build must skip, and `P1..Pk` property entities
naming the relations. Also writes questions that mention item labels, for linking throughput.

Items come in chunks of `CHUNK`, each drawn from its own seeded generator, so the dump's content does
not depend on how many files or processes write it: a dump of 10M items (~100M statements) is written
as several gzip files by parallel processes, the way a real dump is split for a cluster to read.
"""

from __future__ import annotations

import bz2
import gzip
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import IO

import numpy as np

SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "zen", "dar", "bel", "cor", "fin", "gal", "hos", "ith",
             "jun", "kel", "lum", "mar", "nor", "ost", "pra", "qui", "ros", "sil", "tor", "urn", "val", "wen", "xa"]
CHUNK = 10_000
ALPHA = 1.6  # Pareto shape of claims per item
# One item-valued statement and one date statement, as the real dump writes them.
_ITEM = ('{{"mainsnak":{{"snaktype":"value","property":"P{p}","datatype":"wikibase-item","datavalue":{{"value":'
         '{{"entity-type":"item","numeric-id":{q},"id":"Q{q}"}},"type":"wikibase-entityid"}}}},"type":"statement",'
         '"rank":"normal"}}')
_DATE = ('{{"mainsnak":{{"snaktype":"value","property":"P{p}","datatype":"time","datavalue":{{"value":'
         '{{"time":"+1952-03-11T00:00:00Z"}},"type":"time"}}}},"type":"statement","rank":"normal"}}')


def vocabulary(size: int, rng: np.random.Generator) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES, size=int(rng.integers(2, 4)))))
    return sorted(words)


def _words(items: int, seed: int) -> list[str]:
    return vocabulary(min(20_000, max(200, items // 20)), np.random.default_rng(seed))  # 27,900 words exist


def _chunk_lines(lo: int, hi: int, items: int, statements_per_item: float, properties: int, seed: int,
                 words: list[str]) -> tuple[list[str], int, int]:
    """Items lo..hi-1 as dump lines; (lines, item-valued statements, dates)."""
    rng = np.random.default_rng([seed, lo])
    scale = statements_per_item * (ALPHA - 1) / ALPHA
    k = np.minimum(2_000, np.floor(scale * (1 + rng.pareto(ALPHA, hi - lo)))).astype(np.int64)
    total = int(k.sum())
    tails = np.minimum(items, 1 + np.floor(items * rng.random(total) ** 3)).astype(np.int64)
    prop_weights = 1.0 / np.arange(1, properties + 1)
    props = rng.choice(properties, size=total, p=prop_weights / prop_weights.sum()) + 1
    is_date = rng.random(total) < 0.1
    n_words = rng.integers(1, 4, hi - lo)
    label_words = rng.integers(0, len(words), (hi - lo, 3))
    alias_words = rng.integers(0, len(words), hi - lo)
    owner = np.repeat(np.arange(hi - lo), k)
    order = np.lexsort((props, owner))  # claims grouped by property within each item
    props, tails, is_date = props[order].tolist(), tails[order].tolist(), is_date[order].tolist()
    statements = [_DATE.format(p=p) if d else _ITEM.format(p=p, q=q) for p, q, d in zip(props, tails, is_date,
                                                                                          strict=True)]
    lines: list[str] = []
    at = 0
    for j, qid in enumerate(range(lo, hi)):
        end = at + int(k[j])
        groups: list[str] = []
        start = at
        for s in range(at + 1, end + 1):
            if s == end or props[s] != props[start]:
                groups.append(f'"P{props[start]}":[{",".join(statements[start:s])}]')
                start = s
        at = end
        label = " ".join(words[w] for w in label_words[j, : n_words[j]]).title()
        alias = (f'{{"en":[{{"language":"en","value":"{words[alias_words[j]]}"}}]}}' if qid % 3 == 0 else "{}")
        lines.append(f'{{"type":"item","id":"Q{qid}","labels":{{"en":{{"language":"en","value":"{label}"}}}},'
                     f'"descriptions":{{"en":{{"language":"en","value":"item {qid}"}}}},"aliases":{alias},'
                     f'"claims":{{{",".join(groups)}}}}}')
    dates = sum(is_date)
    return lines, total - dates, dates


def _opener(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return gzip.open(path, "wb", compresslevel=1)  # level 1: the dump is written once, read once
    return bz2.open(path, "wb") if path.suffix == ".bz2" else open(path, "wb")


def _write_part(path: Path, chunks: list[tuple[int, int]], items: int, statements_per_item: float,
                properties: int, seed: int, first: bool, last: bool, malformed: int) -> tuple[int, int]:
    """One file of the dump: its chunks of items; the opening bracket in the first file, the property
    entities, malformed lines and the closing bracket in the last."""
    words = _words(items, seed)
    statements = dates = 0
    with _opener(path) as fh:
        if first:
            fh.write(b"[\n")
        for lo, hi in chunks:
            lines, n, d = _chunk_lines(lo, hi, items, statements_per_item, properties, seed, words)
            statements, dates = statements + n, dates + d
            fh.write((",\n".join(lines) + ",\n").encode())
        if last:
            tail = [json.dumps({"type": "property", "id": f"P{p}", "labels": {"en": {"language": "en",
                                                                                  "value": f"relation {p}"}},
                                "claims": {}}) + ",\n" for p in range(1, properties + 1)]
            tail += ["{not json},\n"] * malformed
            tail.append(json.dumps({"type": "item", "id": "Q0", "labels": {}, "claims": {}}) + "\n]\n")
            fh.write("".join(tail).encode())
    return statements, dates


def write_dump(path: Path, items: int, statements_per_item: float = 10.0, properties: int = 200,
               seed: int = 0, malformed: int = 0, parts: int = 1, processes: int = 1) -> dict[str, int]:
    """Write the dump: one file (.json, .json.gz or .json.bz2 by suffix) when `parts` is 1, else a
    directory `path` of `parts` files `part-NNNNN.json.gz` (read in name order, they are one dump),
    written by `processes` processes. Returns what it wrote."""
    path = Path(path)
    chunks = [(lo, min(items + 1, lo + CHUNK)) for lo in range(1, items + 1, CHUNK)]
    parts = max(1, min(parts, len(chunks)))
    if parts == 1:
        files = [path]
    else:
        path.mkdir(parents=True, exist_ok=True)
        files = [path / f"part-{i:05d}.json.gz" for i in range(parts)]
    cuts = np.linspace(0, len(chunks), parts + 1).astype(int)
    jobs = [(files[i], chunks[cuts[i]: cuts[i + 1]], items, statements_per_item, properties, seed, i == 0,
             i == parts - 1, malformed) for i in range(parts)]
    if processes > 1 and parts > 1:
        with ProcessPoolExecutor(min(processes, parts)) as pool:
            done = list(pool.map(_write_part, *zip(*jobs, strict=True)))
    else:
        done = [_write_part(*job) for job in jobs]
    return {"items": items + 1, "properties": properties, "statements": sum(s for s, _ in done),
            "non_item_values": sum(d for _, d in done), "malformed": malformed, "files": parts}


def questions(labels: list[str], count: int, seed: int = 0) -> list[str]:
    """Questions mentioning one or two of the given labels amid stop-words and unknown words."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(labels), size=(count, 2))
    return [f"Which of the following is true about {labels[a]} and the {labels[b]} it was made with?"
            for a, b in picks]
