"""Ray Data plumbing: paths rows -> `map_batches` over an actor pool of writers -> rationale rows
(the `vllm` writer instead runs on Ray's own vLLM processor: kale_ray.synth.ray_llm).

Each actor builds its writer once (a model load, a vLLM engine, an HTTP pool) and then serves batches.
Actors take fractional CPUs so Ray Data's read tasks always find a CPU (on a 2-CPU node, actors that
hold every CPU starve the reads and the job hangs without an error). A dead actor is restarted up to
`synth.max_restarts` times and its in-flight batch retried on it (Ray Data retries actor tasks by
default), so a killed actor costs time, never rows.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from typing import Any

import pyarrow as pa


class SynthWorker:
    """The callable class Ray Data instantiates once per actor."""

    def __init__(self, spec: dict[str, Any]) -> None:
        from kale_ray.config.synth import SynthConfig
        from kale_ray.synth.backends import make_backend

        self.cfg = SynthConfig.model_validate(spec["synth"])
        self.spec = spec
        if self.cfg.backend == "hf":
            import torch

            torch.set_num_threads(max(1, int(round(self.cfg.worker_cpus))))
        self.backend = make_backend(self.cfg, spec["model"], spec["seed"], spec["dtype"])
        self.generator = {**self.backend.describe(), "seed": spec["seed"], "ki": self.cfg.ki,
                          "no_path": spec["no_path"]}

    def __call__(self, batch: pa.Table) -> pa.Table:
        from kale_ray.ray_utils import with_node
        from kale_ray.synth.rows import output_schema, write_rationales

        out = write_rationales(batch.to_pylist(), self.backend, ki=self.cfg.ki, no_path=self.spec["no_path"],
                               max_paths=self.cfg.max_paths_in_prompt, generator=self.generator)
        return with_node(pa.Table.from_pylist(out, schema=output_schema(batch.schema)))


def rationale_dataset(table: pa.Table, spec: dict[str, Any], cfg: Any):  # noqa: ANN201 (ray.data.Dataset)
    """A lazy dataset of rationale rows; one input block per batch so every actor gets work."""
    import ray.data
    from ray.data import ActorPoolStrategy

    size = cfg.batch_size
    blocks = [table.slice(i, size) for i in range(0, table.num_rows, size)]
    ds = ray.data.from_arrow(blocks)
    remote: dict[str, Any] = {"num_cpus": cfg.worker_cpus, "max_restarts": cfg.max_restarts}
    if cfg.worker_gpus:
        remote["num_gpus"] = cfg.worker_gpus
    key = os.environ.get(cfg.api_key_env) if cfg.backend == "openai" else None
    if key:
        # The driver's key reaches the actors, which may run on other nodes or predate the variable.
        remote["runtime_env"] = {"env_vars": {cfg.api_key_env: key}}
    with warnings.catch_warnings():
        # max_restarts has no named parameter in Ray 2.60 and still travels as a remote arg.
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        # No more actors than batches: an idle actor only loads a model (and Ray Data warns about it).
        pool = ActorPoolStrategy(size=max(1, min(cfg.workers, len(blocks))))
        return ds.map_batches(SynthWorker, fn_constructor_kwargs={"spec": spec}, batch_size=size,
                              batch_format="pyarrow", compute=pool, **remote)


def rationale_batches(table: pa.Table, spec: dict[str, Any], cfg: Any) -> Iterator[pa.Table]:
    """The rationale rows of `table` as they come back: the `vllm` writer on Ray's vLLM processor
    (kale_ray.synth.ray_llm), every other writer on the actor pool of `rationale_dataset`."""
    if cfg.backend == "vllm":
        from kale_ray.synth.ray_llm import rationale_batches as vllm_batches

        yield from vllm_batches(table, spec, cfg)
        return
    yield from rationale_dataset(table, spec, cfg).iter_batches(batch_format="pyarrow", batch_size=None)
