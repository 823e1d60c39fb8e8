import json

from kale_ray import env


def _clear(monkeypatch):
    for key in [*env.DEFAULTS, *env.QUIET, *env.OFFLINE, env.VERBOSE, "RAY_JOB_CONFIG_JSON_ENV_VAR"]:
        monkeypatch.delenv(key, raising=False)


def test_defaults_are_quiet_unless_verbose(monkeypatch):
    _clear(monkeypatch)
    env.apply_defaults()
    import os

    assert os.environ["RAY_TRAIN_ENABLE_PRINT_PATCH"] == "0"
    assert os.environ["RAY_DATA_LOGGING_CONFIG"].endswith("ray_data_logging.yaml")
    _clear(monkeypatch)
    env.apply_defaults(verbose_logs=True)
    assert env.verbose() and "RAY_DATA_LOGGING_CONFIG" not in os.environ
    assert os.environ["PYTHONUNBUFFERED"] == "1"


def test_a_value_already_set_wins(monkeypatch):
    _clear(monkeypatch)
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "info")
    env.apply_defaults()
    assert env.worker_env_vars()["TRANSFORMERS_VERBOSITY"] == "info"


def test_worker_env_leaves_the_jobs_own_variables_to_it(monkeypatch):
    """Ray refuses a driver runtime_env that sets a variable the submitted job's runtime_env sets."""
    _clear(monkeypatch)
    env.apply_defaults()
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps(
        {"runtime_env": {"env_vars": {"PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}}}))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    workers = env.worker_env_vars()
    assert "PYTHONUNBUFFERED" not in workers and "HF_HUB_OFFLINE" not in workers
    assert workers["TOKENIZERS_PARALLELISM"] == "false"


def test_ray_data_logging_config_is_shipped_and_valid():
    import logging.config
    from pathlib import Path

    import yaml

    config = yaml.safe_load(Path(env.QUIET["RAY_DATA_LOGGING_CONFIG"]).read_text())
    assert config["handlers"]["console"]["level"] == "WARNING"
    import ray.data  # noqa: F401 (the handler classes the config names)

    logging.config.dictConfig({**config, "handlers": {"console": config["handlers"]["console"]},
                               "loggers": {"kale-test": {"handlers": ["console"]}}})
