"""Importing kale_ray (and building its CLI) must not pull in heavy or GPU-touching modules."""

import json
import subprocess
import sys

FORBIDDEN = ["vllm", "deepspeed", "ray.serve", "torch", "transformers", "networkit"]

CODE = """
import json, sys
import kale_ray, kale_ray.config, kale_ray.cli
kale_ray.cli.build_parser()
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {'vllm','deepspeed','torch','transformers','networkit'} or m.startswith('ray.serve'))))
"""


def test_import_and_cli_stay_light():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == [], f"importing kale_ray loaded heavy modules: {loaded[:10]}"


def test_forbidden_list_is_checked():
    # The probe above would miss a module it does not name; keep the two lists in step.
    for name in FORBIDDEN:
        assert name.split(".")[-1] in CODE


ENGINES = """
import json, sys
import kale_ray.engines, kale_ray.engines.base, kale_ray.engines.registry, kale_ray.engines.loading
import kale_ray.engines.hf, kale_ray.serving.openai_api, kale_ray.synth.backends.hf
import kale_ray.synth.ray_llm, kale_ray.serving.ray_llm
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {'vllm','torch','transformers','peft'})))
"""


def test_engine_modules_import_without_torch_or_vllm():
    # Engines load their libraries when one is built, so any stage may import the engine layer.
    out = subprocess.run([sys.executable, "-c", ENGINES], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
