"""`kale-ray study run|report|precheck`: the study's pipeline variants, its results page, and the
pre-check of its KA arms."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from kale_ray.cli.args import add_config_args

    parser = sub.add_parser("study", help="run the KALE study (every variant's pipeline) and write its results page")
    cmds = parser.add_subparsers(dest="study_command", required=True)
    run = cmds.add_parser("run", help="run what is missing of every variant (each resumes where it stopped), then the report")
    run.add_argument("--only", nargs="+", default=None, help="run just these variants (and `extra`: the path and eval side runs)")
    run.add_argument("--rerun", action="store_true",
                     help="run variants whose artifacts are gone even when the committed results hold them complete")
    add_config_args(run)
    run.set_defaults(func=_run)
    report = cmds.add_parser("report", help="rebuild the results page from the variants' artifacts merged into the "
                                            "committed results (study.committed; enough alone when the artifacts are gone)")
    report.add_argument("--from-json", default=None,
                        help="re-render from an earlier collection (study.results_json) instead of the artifacts")
    add_config_args(report)
    report.set_defaults(func=_report)
    from kale_ray.study.precheck import ROWS, STEPS

    check = cmds.add_parser("precheck", help="train each KA arm briefly on shared rows and check that it lowers the "
                                             "plain view's cross-entropy on the gold answer (writes study.precheck)")
    check.add_argument("--rows", type=int, default=ROWS, help=f"training rows every arm trains on (default {ROWS})")
    check.add_argument("--steps", type=int, default=STEPS, help=f"optimizer steps per arm (default {STEPS})")
    check.add_argument("--variant", default=None, help="the study variant whose KA arms are checked (default: the first)")
    check.add_argument("--out", default=None, help="where the JSON goes (default: study.precheck)")
    add_config_args(check)
    check.set_defaults(func=_precheck)


def _run(args: argparse.Namespace) -> int:
    from kale_ray.config import load_config
    from kale_ray.pipeline import run_study

    run_study(load_config(args.config, args.overrides), args.only, args.rerun)
    return 0


def _report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kale_ray.config import load_config
    from kale_ray.study.report import write_report

    write_report(load_config(args.config, args.overrides), Path(args.from_json) if args.from_json else None)
    return 0


def _precheck(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kale_ray.config import load_config
    from kale_ray.study.precheck import run_precheck

    run_precheck(load_config(args.config, args.overrides), args.rows, args.steps, args.variant,
                 Path(args.out) if args.out else None)
    return 0
