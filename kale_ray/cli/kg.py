"""`kale-ray kg build|paths|link|extract`: build a KG artifact, search paths, link a benchmark."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from kale_ray.cli.args import add_config_args

    parser = sub.add_parser("kg", help="build knowledge graphs, link entities, search KG paths")
    cmds = parser.add_subparsers(dest="kg_command", required=True)

    build = cmds.add_parser("build", help="source -> KG artifact (Parquet tables, networkit graph, manifest)")
    build.add_argument("--source", choices=["wordnet", "metaqa", "triples", "wikidata"], default=None,
                       help="source kind (default: kg.source)")
    build.add_argument("--input", default=None, help="source file or directory (default: kg.input)")
    build.add_argument("--out", default=None, help="artifact directory (default: <workdir>/<run>/kg)")
    build.add_argument("--entity-labels", default=None, help="triples: TSV key<TAB>label[<TAB>aliases]")
    build.add_argument("--relation-labels", default=None, help="triples: TSV key<TAB>label")
    build.add_argument("--force", action="store_true", help="rebuild even when the artifact is complete")
    add_config_args(build)
    build.set_defaults(func=_build)

    paths = cmds.add_parser("paths", help="multi-path A* between explicit pairs of KG keys")
    paths.add_argument("--kg", required=True, help="KG artifact directory")
    paths.add_argument("--pairs", required=True, help="TSV: source_key<TAB>target_key per line")
    paths.add_argument("--out", required=True, help="JSONL output, one record per pair")
    add_config_args(paths)
    paths.set_defaults(func=_paths)

    link = cmds.add_parser("link", help="link a benchmark's questions and answers; print coverage")
    link.add_argument("--kg", required=True, help="KG artifact directory")
    link.add_argument("--benchmark", default=None, help="benchmark name or file (default: data.benchmark)")
    link.add_argument("--limit", type=int, default=None, help="link only a seeded sample of N rows (data.sample_seed)")
    link.add_argument("--show", type=int, default=3, help="print this many linked rows")
    add_config_args(link)
    link.set_defaults(func=_link)

    extract = cmds.add_parser("extract", help="the paths stage on Ray Data: rows -> paths artifact")
    extract.add_argument("--kg", required=True, help="KG artifact directory")
    extract.add_argument("--rows", default=None,
                         help="rows: a Parquet file in the data schema, or a benchmark name (default: data.benchmark)")
    extract.add_argument("--limit", type=int, default=None, help="only a seeded sample of N rows (data.sample_seed)")
    extract.add_argument("--out", default=None, help="artifact directory (default: <workdir>/<run>/paths)")
    add_config_args(extract)
    extract.set_defaults(func=_extract)


def _build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kale_ray.config import load_config
    from kale_ray.kg.stage import build_kg, default_input, needs_ray
    from kale_ray.kg.store import KGError

    overrides = list(args.overrides)
    if args.source:
        overrides.append(f"kg.source={args.source}")
    if args.input:
        overrides.append(f"kg.input={args.input}")
    cfg = load_config(args.config, overrides)
    if needs_ray(cfg):
        from kale_ray.ray_utils import init_ray

        init_ray(cfg.ray)
    try:
        build_kg(cfg.kg.source, default_input(cfg), Path(args.out) if args.out else cfg.stage_dir("kg"),
                 entity_labels=args.entity_labels or cfg.kg.entity_labels,
                 relation_labels=args.relation_labels or cfg.kg.relation_labels, force=args.force)
    except (FileNotFoundError, KGError) as err:
        print(f"kale-ray kg build: {err}")
        return 1
    return 0


def _paths(args: argparse.Namespace) -> int:
    import json

    from kale_ray.config import load_config
    from kale_ray.kg.pairs import search_pairs
    from kale_ray.kg.store import KGError

    cfg = load_config(args.config, args.overrides)
    try:
        counts = search_pairs(args.kg, args.pairs, args.out, cfg.paths, cfg.seed)
    except (KGError, FileNotFoundError) as err:
        print(f"kale-ray kg paths: {err}")
        return 1
    print(json.dumps({"out": args.out, "pairs": counts}))
    return 0


def _rows(cfg, name: str | None, limit: int | None):  # noqa: ANN001, ANN202
    from pathlib import Path

    import pyarrow as pa
    import pyarrow.parquet as pq

    from kale_ray.data.benchmarks import load_benchmark

    names = [name] if name else cfg.data.benchmarks
    table = pa.concat_tables([pq.read_table(n) if Path(n).suffix == ".parquet" else
                              load_benchmark(n, cfg.data_root, split=cfg.data.source_split) for n in names])
    from kale_ray.data.split import take

    return take(table, limit, cfg.data.sample_seed)


def _link(args: argparse.Namespace) -> int:
    import json

    from kale_ray.config import load_config
    from kale_ray.kg.link import link_coverage
    from kale_ray.kg.store import load_kg

    cfg = load_config(args.config, args.overrides)
    kg = load_kg(args.kg)
    rows = _rows(cfg, args.benchmark, args.limit)
    report, examples = link_coverage(kg, rows.to_pylist(), cfg.kg, show=args.show)
    for example in examples:
        print(json.dumps(example, ensure_ascii=False))
    print(json.dumps(report, indent=2))
    return 0


def _extract(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kale_ray.config import load_config
    from kale_ray.kg.extract import run_paths_stage

    cfg = load_config(args.config, args.overrides)
    rows = _rows(cfg, args.rows, args.limit)
    run_paths_stage(cfg, rows, Path(args.kg), Path(args.out) if args.out else cfg.stage_dir("paths"))
    return 0
