"""train.report_to: MLflow to a local file store and wandb offline, read back through their own
clients; a restarted logger continues the same run; a tracker that is not installed is a clear error."""

import sys

import pytest

from kale_ray.config import ConfigError
from kale_ray.config.train import TrainConfig
from kale_ray.train.loop import StepLogger
from kale_ray.train.tracking import check_trackers

RECORDS = [{"step": s, "loss": 2.0 / s, "kl": 1.0 / s, "ce": 3.0, "tokens_per_s": 100.0 * s, "lr": 1e-4}
           for s in (1, 2, 3)]


def _log(run_dir, tc, records, start=0):
    logger = StepLogger(run_dir, "ka", 3, start, tc, ("my-run", "ka-s1"))
    for record in records:
        logger.log(record)
    logger.close()


def test_mlflow_file_store_gets_metrics_params_and_resumes(tmp_path):
    from mlflow.tracking import MlflowClient

    tc = TrainConfig(method="ka", report_to=["tensorboard", "mlflow"])
    _log(tmp_path, tc, RECORDS[:2])
    _log(tmp_path, tc, RECORDS[2:], start=2)  # a restarted worker group: the same MLflow run continues
    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").resolve().as_uri())
    experiment = client.get_experiment_by_name("my-run")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 and runs[0].info.run_name == "ka-s1" and runs[0].info.status == "FINISHED"
    history = client.get_metric_history(runs[0].info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(1, 2.0), (2, 1.0), (3, pytest.approx(2 / 3))]
    assert runs[0].data.params["target"] == "live" and runs[0].data.params["method"] == "ka"
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 3


def test_wandb_offline_writes_a_local_run(tmp_path):
    tc = TrainConfig(method="ka", report_to=["wandb"])
    _log(tmp_path, tc, RECORDS)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    assert not (tmp_path / "tensorboard").exists()  # only what report_to names


@pytest.mark.parametrize("name", ["mlflow", "wandb"])
def test_a_missing_tracker_is_a_clear_error(monkeypatch, name):
    monkeypatch.setitem(sys.modules, name, None)  # as if not installed: find_spec answers None
    with pytest.raises(ConfigError, match=rf"report_to includes {name}.*pip install 'kale-ray\[{name}\]'"):
        check_trackers(["tensorboard", name])
    check_trackers(["tensorboard"])


def test_report_to_rejects_an_unknown_tracker():
    with pytest.raises(ValueError, match="report_to"):
        TrainConfig(report_to=["comet"])
