"""The model stage converts a registered model in a Ray task: the driver (on a cluster, a head node
without GPUs) loads no model, also not for the conversion's check that the model answers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kale_ray.artifacts import Manifest
from kale_ray.engines.registry import resolve_model_in_task

pytestmark = pytest.mark.ray


def test_a_registered_model_is_prepared_in_a_task_not_in_the_driver(ray_local, tmp_path) -> None:
    path = resolve_model_in_task("smollm2-135m-instruct", tmp_path)
    manifest = Manifest.read(Path(path))
    assert manifest is not None and manifest.complete
    assert manifest.extra["pid"] != os.getpid()  # converted and checked in a task's worker process
    assert "paris" in manifest.extra["verify_reply"].lower()  # the converted model answers
    assert resolve_model_in_task("smollm2-135m-instruct", tmp_path) == path  # prepared: returned at once
    assert resolve_model_in_task("/data/ckpt/my-model", tmp_path) == "/data/ckpt/my-model"  # paths pass
