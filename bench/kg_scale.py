"""KI at dump scale: a generated Wikidata-format dump -> streaming build -> shared mapped KG -> linking and
paths, each measured, with WordNet's path throughput measured in the same run as the reference.

    PYTHONPATH=$PWD RAY_AUTH_MODE=disabled python bench/kg_scale.py --items 1000000   # size is a parameter
    PYTHONPATH=$PWD RAY_AUTH_MODE=disabled python bench/kg_scale.py --items 20000 --pairs 200   # a quick look

It prints (and writes as JSON to --out): the dump's size; per build step its seconds, the driver's peak
RSS, the peak proportional memory (PSS) of the whole process tree (driver, raylet, workers: no page
counted twice) and the largest single process's peak RSS (what one task holds); the artifact's bytes;
1, 2 and 4 paths actors (each maps the KG, builds its linker and searcher and reads every page): load
seconds, anonymous (private) memory each adds and the tree's PSS; linking throughput (questions/s, one
core); path throughput at hop limit 3 (pairs/s, one core, one batched call over half near, half random
pairs) on this KG and on WordNet, and their ratio, with the hub cap --max-degree-through (and, with a
cap, the same pairs without one: pairs/s, pairs with a path, expansions). Results go to bench/README.md
by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from kale_ray.kg.build import BuildLimits
from kale_ray.kg.dumpgen import questions, write_dump

GiB = 1024**3
MiB = 1024**2


class Sampler:
    """Samples the driver's RSS and the process tree's PSS every `period` s; peaks kept per step."""

    def __init__(self, period: float = 0.5) -> None:
        self.period, self.step = period, "start"
        self.peaks: dict[str, dict[str, float]] = {}
        self._stop = threading.Event()
        self.me = psutil.Process()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Sampler:
        self.thread.start()
        return self

    def mark(self, step: str) -> None:
        """The step that just ended is `step`; samples from now on belong to the next one."""
        self.peaks[step] = self.peaks.pop("_current", {"driver_rss": 0, "tree_pss": 0, "max_process_rss": 0})

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.period)

    def sample(self) -> None:
        try:
            driver = self.me.memory_info().rss
            pss, biggest = 0, 0
            for p in [self.me, *self.me.children(recursive=True)]:
                try:
                    info = p.memory_full_info()
                    pss += info.pss
                    if p.pid != self.me.pid:
                        biggest = max(biggest, info.rss)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
        except psutil.Error:
            return
        cur = self.peaks.setdefault("_current", {"driver_rss": 0, "tree_pss": 0, "max_process_rss": 0})
        cur["driver_rss"] = max(cur["driver_rss"], driver)
        cur["tree_pss"] = max(cur["tree_pss"], pss)
        cur["max_process_rss"] = max(cur["max_process_rss"], biggest)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join()


def _anonymous_kb() -> int:
    with open("/proc/self/smaps_rollup") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("Anonymous:"))


class PathsActorProbe:
    """What a paths actor does at start (map the KG, build linker and searcher), then reads every page."""

    def load(self, kg_dir: str) -> dict[str, float]:
        from kale_ray.kg.link import Linker
        from kale_ray.kg.paths import PathSearcher, SearchLimits
        from kale_ray.kg.store import load_kg

        before = _anonymous_kb()
        t0 = time.perf_counter()
        kg = load_kg(Path(kg_dir))
        self.linker = Linker(kg)
        self.searcher = PathSearcher(kg.adjacency, SearchLimits(max_hops=3))
        self.linker.link_question("warm up")
        load_s = time.perf_counter() - t0
        adj = kg.adjacency
        for a in (adj.indptr, adj.nbr, adj.edge, adj.back, kg.heads, kg.relations, kg.tails, kg.alias_index.ids,
                  kg.alias_index.ptr, kg.alias_index.names.data, kg.alias_index.names.off, kg.keys.data,
                  kg.keys.off, kg.labels.data, kg.labels.off):
            int(np.asarray(a).view(np.uint8)[::4096].sum())  # read every page
        self.kg = kg
        return {"load_s": load_s, "anonymous_mib": (_anonymous_kb() - before) / 1024,
                "pid": os.getpid()}

    def mapped(self, kg_dir: str) -> dict[str, float]:
        """MiB of this process's mappings of the artifact's arrays: resident, and shared with others."""
        prefix = str(Path(kg_dir) / "arrays")
        totals = {"rss": 0, "shared": 0}
        inside = False
        with open("/proc/self/smaps") as fh:
            for line in fh:
                head = line.split()
                if head and "-" in head[0] and not head[0].endswith(":"):
                    inside = len(head) >= 6 and head[5].startswith(prefix)
                elif inside and head[0] == "Rss:":
                    totals["rss"] += int(head[1])
                elif inside and head[0] in ("Shared_Clean:", "Shared_Dirty:"):
                    totals["shared"] += int(head[1])
        return {k: v / 1024 for k, v in totals.items()}

    def warm(self, kg_dir: str) -> None:
        self.load(kg_dir)


def actor_memory(kg_dir: Path, warm_dir: Path, counts: list[int]) -> list[dict[str, Any]]:
    import ray

    probe = ray.remote(num_cpus=0)(PathsActorProbe)
    rows = []
    for k in counts:
        actors = [probe.remote() for _ in range(k)]
        ray.get([a.warm.remote(str(warm_dir)) for a in actors])   # imports and compiled kernels first
        pids = ray.get([a.load.remote(str(kg_dir)) for a in actors])
        mapped = ray.get([a.mapped.remote(str(kg_dir)) for a in actors])
        pss = sum(psutil.Process(r["pid"]).memory_full_info().pss for r in pids)
        uss = [psutil.Process(r["pid"]).memory_full_info().uss for r in pids]
        rows.append({"actors": k, "load_s_max": max(r["load_s"] for r in pids),
                     "anonymous_mib_per_actor": float(np.mean([r["anonymous_mib"] for r in pids])),
                     "mapped_rss_mib_per_actor": float(np.mean([m["rss"] for m in mapped])),
                     "mapped_shared_mib_per_actor": float(np.mean([m["shared"] for m in mapped])),
                     "uss_mib_per_actor": float(np.mean(uss)) / MiB, "actors_pss_mib": pss / MiB})
        for a in actors:
            ray.kill(a)
        time.sleep(1.0)
    return rows


def near_pairs(adj, n: int, seed: int, hops: int = 3) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """The pairs the paths stage searches: both ends nodes the linker may link (connected, not hubs:
    degree <= max(1% of nodes, 50), kg.max_entity_degree_share and kg.min_hub_degree), half of them
    random (mostly no path), half with the target at the end of a random walk of 1..hops steps over
    such nodes (so within `hops`, with or without a hub cap). A walk costs its steps; a BFS to pick a
    near node would cost the whole 3-hop ball, which through hubs is most of a 10M-node graph."""
    rng = np.random.default_rng(seed)
    degree = np.diff(adj.indptr)
    ok = (degree > 0) & (degree <= max(0.01 * adj.num_nodes, 50))
    linkable = np.flatnonzero(ok)
    sources = rng.choice(linkable, n)
    targets = rng.choice(linkable, n)
    indptr, nbr = adj.indptr, adj.nbr
    for j in range(0, n, 2):
        u = int(sources[j])
        for _ in range(int(rng.integers(1, hops + 1))):
            options = np.asarray(nbr[indptr[u]: indptr[u + 1]])
            options = options[ok[options] & (options != sources[j])]
            if not len(options):
                break
            u = int(rng.choice(options))
        if u != sources[j]:
            targets[j] = u
    return sources, targets


def path_throughput(kg, pairs: int, seed: int = 0, rounds: int = 3, in_memory: bool = False,  # noqa: ANN001
                    max_degree_through: int | None = None) -> dict[str, float]:
    """Pairs/s of one batched search at hop limit 3 with the hub cap `max_degree_through`
    (`paths.max_degree_through`, None = none); `in_memory` searches private copies of the CSR instead of
    the mapped arrays (the same pairs: what mapping costs, if anything). Work per pair is reported as
    expansions (mean, and the largest: a pair that walks into a hub shows there)."""
    from kale_ray.kg.paths import PathSearcher, SearchLimits
    from kale_ray.kg.store import Adjacency

    adj = kg.adjacency
    if in_memory:
        adj = Adjacency(np.array(adj.indptr), np.array(adj.nbr), np.array(adj.edge), np.array(adj.back))
    searcher = PathSearcher(adj, SearchLimits(max_hops=3, max_paths=8, max_degree_through=max_degree_through))
    sources, targets = near_pairs(kg.adjacency, pairs, seed)
    searcher.search_many(sources[:10], targets[:10])  # compiled once
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        batch = searcher.search_many(sources, targets)
        best = min(best, time.perf_counter() - t0)
    degree = np.diff(kg.adjacency.indptr)
    return {"mean_degree": float(degree.mean()), "max_degree": int(degree.max()),
            "max_degree_through": max_degree_through,
            "nodes_over_cap": 0 if max_degree_through is None else int((degree > max_degree_through).sum()),
            "pairs": pairs, "seconds": best, "pairs_per_s": pairs / best,
            "with_path": int(np.count_nonzero(np.diff(batch.pair_offsets))),
            "paths_per_pair": float(batch.pair_offsets[-1] / max(pairs, 1)),
            "expanded_per_pair": float(batch.expanded.mean()), "expanded_max": int(batch.expanded.max()),
            "truncated": int(batch.truncated.sum())}


def linking_throughput(kg, count: int) -> dict[str, float]:  # noqa: ANN001
    from kale_ray.kg.link import Linker

    linker = Linker(kg)
    rng = np.random.default_rng(1)
    labels = [kg.labels[int(e)] for e in rng.integers(0, kg.num_entities, 2_000)]
    qs = questions(labels, count)
    linker.link_question(qs[0])
    t0 = time.perf_counter()
    linked = sum(bool(linker.link_question(q)) for q in qs)
    seconds = time.perf_counter() - t0
    return {"questions": count, "seconds": seconds, "questions_per_s": count / seconds, "linked": linked}


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--statements-per-item", type=float, default=10.0)
    ap.add_argument("--cpus", type=int, default=2, help="Ray's CPUs, and the processes writing the dump")
    ap.add_argument("--parts", type=int, default=0, help="dump files (default: one per 250,000 items)")
    ap.add_argument("--shard-lines", type=int, default=50_000)
    ap.add_argument("--bucket-rows", type=int, default=2_000_000)
    ap.add_argument("--pairs", type=int, default=2_000)
    ap.add_argument("--questions", type=int, default=5_000)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / f"kale-ray-kg-scale-{os.getuid()}")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--keep-dump", action="store_true", help="reuse a dump of the same size if present")
    ap.add_argument("--paths-only", action="store_true",
                    help="reuse the KG built in --workdir: linking and path throughput only")
    ap.add_argument("--max-degree-through", type=int, default=None, metavar="N",
                    help="hub cap of the path searches (paths.max_degree_through; default none); with a cap, "
                         "the same pairs are also searched without one (paths_no_cap)")
    args = ap.parse_args()
    if args.paths_only:
        return measure_paths(args)

    import ray

    from kale_ray.kg.sources.wikidata import build_wikidata
    from kale_ray.kg.stage import build_kg
    from kale_ray.kg.store import load_kg

    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"items": args.items, "statements_per_item": args.statements_per_item,
                              "cpus": args.cpus, "shard_lines": args.shard_lines, "bucket_rows": args.bucket_rows}
    parts = args.parts or max(1, args.items // 250_000)
    folder = work / f"dump-{args.items}-{args.statements_per_item:g}"
    dump = folder if parts > 1 else folder / "dump.json.gz"
    written = folder / ".written.json"  # last (the build reads no dot file): a dump cut short is written again
    t0 = time.perf_counter()
    if args.keep_dump and written.is_file():
        result["dump"] = json.loads(written.read_text())
    else:
        folder.mkdir(parents=True, exist_ok=True)
        written.unlink(missing_ok=True)
        result["dump"] = write_dump(dump, args.items, args.statements_per_item, seed=0, malformed=10, parts=parts,
                                    processes=args.cpus)
        written.write_text(json.dumps(result["dump"]))
    result["generate_s"] = time.perf_counter() - t0
    result["dump_bytes"] = dir_bytes(dump) if dump.is_dir() else dump.stat().st_size
    print(f"dump: {dump} ({result['dump_bytes'] / MiB:.0f} MiB gz, {parts} file(s), "
          f"{result['dump']['statements']:,} item statements) in {result['generate_s']:.0f}s", flush=True)

    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False,
             object_store_memory=512 * MiB)
    sampler = Sampler().start()
    sampler.mark("ray_start")
    out = work / "kg"
    t0 = time.perf_counter()
    build_wikidata(dump, out, config_hash="bench", inputs={},
                   limits=BuildLimits(shard_lines=args.shard_lines, bucket_rows=args.bucket_rows),
                   on_step=lambda step: (sampler.sample(), sampler.mark(step), print(f"build: {step} done", flush=True)))
    result["build_s"] = time.perf_counter() - t0
    sampler.stop()
    kg = load_kg(out)
    seconds = kg.manifest["extra"]["build"]["seconds"]
    result["build_steps"] = {step: {"seconds": seconds.get(step), **{k: v / MiB for k, v in peaks.items()}}
                             for step, peaks in sampler.peaks.items() if step in seconds}
    result["counts"] = kg.manifest["counts"]
    result["artifact_bytes"] = dir_bytes(out)
    result["arrays_bytes"] = dir_bytes(out / "arrays")
    result["graph_bytes"] = sum((out / "arrays" / f"{n}.npy").stat().st_size
                                for n in ("indptr", "nbr", "edge", "back", "heads", "relations", "tails"))
    print(json.dumps({k: result[k] for k in ("build_s", "build_steps", "counts", "artifact_bytes")}, indent=1),
          flush=True)

    warm = work / "warm-kb.txt"
    warm.write_text("snow|has_colour|white\n")
    warm_dir = build_kg("metaqa", warm, work / "warm-kg")
    result["actors"] = actor_memory(out, warm_dir, [1, 2, 4])
    print(json.dumps(result["actors"], indent=1), flush=True)
    ray.shutdown()

    result.update(measure_paths(args, kg))
    target = args.out or work / f"result-{args.items}.json"
    target.write_text(json.dumps(result, indent=1))
    print(f"-> {target}", flush=True)


def measure_paths(args: argparse.Namespace, kg=None) -> dict[str, Any]:  # noqa: ANN001
    """Linking and paths on the built KG, and WordNet's paths as the reference, in this one process."""
    from kale_ray.kg.stage import build_kg
    from kale_ray.kg.store import load_kg

    kg = kg or load_kg(args.workdir / "kg")
    cap = args.max_degree_through
    result: dict[str, Any] = {"linking": linking_throughput(kg, args.questions),
                              "paths": path_throughput(kg, args.pairs, max_degree_through=cap),
                              "paths_in_memory": path_throughput(kg, args.pairs, in_memory=True,
                                                                 max_degree_through=cap)}
    if cap is not None:
        result["paths_no_cap"] = path_throughput(kg, args.pairs)
        result["cap_speedup"] = result["paths"]["pairs_per_s"] / result["paths_no_cap"]["pairs_per_s"]
    wordnet = load_kg(build_kg("wordnet", Path("/usr/share/wordnet"), args.workdir / "wordnet"))
    result["wordnet_paths"] = path_throughput(wordnet, args.pairs, max_degree_through=cap)
    result["paths_per_core_ratio_vs_wordnet"] = result["paths"]["pairs_per_s"] / result["wordnet_paths"]["pairs_per_s"]
    result["mapped_vs_in_memory"] = result["paths"]["pairs_per_s"] / result["paths_in_memory"]["pairs_per_s"]
    print(json.dumps(result, indent=1), flush=True)
    if args.paths_only:
        (args.workdir / f"result-paths-cap{cap}.json").write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
