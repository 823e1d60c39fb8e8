"""Moved to `kale_ray.engines.registry`; this alias keeps `kale-ray model prepare` (model/commands.py)
working until the CLI imports the new path. Delete it with that change."""

from kale_ray.engines.registry import ModelError, prepare_model

__all__ = ["ModelError", "prepare_model"]
