import subprocess
import sys

import pytest

from kale_ray.cli import build_parser, main


def test_help_lists_stages(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for stage in ("config", "model", "data", "pipeline"):
        assert stage in out


def test_every_stage_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in sub.choices:
        out = subprocess.run([sys.executable, "-m", "kale_ray", name, "--help"],
                             capture_output=True, text=True)
        assert out.returncode == 0 and "usage:" in out.stdout, name


def test_config_error_exits_2_with_key(capsys):
    assert main(["config", "show", "train.optim.lr=abc"]) == 2
    assert "train.optim.lr" in capsys.readouterr().err


def test_data_show_reports_split(capsys):
    assert main(["data", "show", "data.benchmark=arc-easy", "data.limit_train=2"]) == 0
    out = capsys.readouterr().out
    assert '"train": 2' in out and '"test":' in out


def test_data_show_prints_the_subject_mix_of_the_sample(capsys):
    assert main(["data", "show", "data.benchmark=mmlu", "data.limit_test=40"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("test mix: mmlu: 40 rows"))
    assert int(line.split(" from ")[1].split()[0]) >= 25 and "abstract-algebra 35" not in line


def test_data_stage_is_skipped_when_complete(tmp_path, capsys):
    from kale_ray.config import load_config
    from kale_ray.data.stage import read_split, run_data_stage

    cfg = load_config(None, [f"workdir={tmp_path}", "data.limit_train=5", "data.limit_test=7"])
    out = run_data_stage(cfg)
    assert read_split(out, "train").num_rows == 5 and read_split(out, "test").num_rows == 7
    run_data_stage(cfg)
    assert "skipping" in capsys.readouterr().out


@pytest.mark.parametrize("job, stage", [("pipeline", "pipeline"), ("synthesize", "synth"),
                                        ("train", "train"), ("evaluate", "eval")])
def test_jobs_are_the_stage_commands(job, stage, capsys):
    """`python -m jobs.<job>` takes exactly `kale-ray <stage>`'s arguments (one parser per stage)."""
    import importlib

    module = importlib.import_module(f"jobs.{job}")
    with pytest.raises(SystemExit) as done:
        module.main(["--help"])
    assert done.value.code == 0
    assert f"usage: kale-ray {stage}" in capsys.readouterr().out


def test_job_reports_config_errors_as_exit_2(capsys):
    from jobs.pipeline import main as pipeline_job

    assert pipeline_job(["train.optim.lr=abc"]) == 2
    assert "train.optim.lr" in capsys.readouterr().err


def test_data_show_strict_names_the_bad_line(tmp_path, capsys):
    bad = tmp_path / "mine.jsonl"
    bad.write_text('{"question": "2+2?", "choices": ["3", "4"], "answer": "B"}\n{oops\n')
    assert main(["data", "show", f"data.benchmark={bad}"]) == 0
    assert '"skipped": 1' in capsys.readouterr().out
    assert main(["data", "show", "--strict", f"data.benchmark={bad}"]) == 1
    assert "mine.jsonl:2: invalid JSON" in capsys.readouterr().out
