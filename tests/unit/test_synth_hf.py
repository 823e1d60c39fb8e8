"""The hf writer on the REAL SmolLM2-135M-Instruct: chat template, batched generation, context limit."""

from __future__ import annotations

import pytest

from kale_ray.config.synth import SynthConfig
from kale_ray.synth.backends import make_backend
from kale_ray.synth.prompts import contains_option_letter
from kale_ray.synth.rows import write_rationales
from tests.synth_support import arc_rows, with_paths

MAX_NEW = 16


@pytest.fixture(scope="module")
def backend(smollm2_path):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a generator actor with worker_cpus <= 1 (on 2 shared cores, 8x faster)
    cfg = SynthConfig(backend="hf", max_new_tokens=MAX_NEW, max_model_len=360)  # the worked example takes ~150
    yield make_backend(cfg, str(smollm2_path), seed=0)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def rows(data_root):
    rows = [with_paths(r, found=i != 2) for i, r in enumerate(arc_rows(data_root, 3))]
    too_long = {**rows[0], "id": "too-long",
                "path_texts": [f"fact number {i} about {rows[0]['gold_text']}" for i in range(40)]}
    return [*rows, too_long]


@pytest.fixture(scope="module")
def written(backend, rows):
    return write_rationales(rows, backend, ki=True, no_path="fallback", max_paths=40,
                            generator=backend.describe())


def test_hf_writes_rationales_with_the_chat_template(written, rows):
    assert [r["id"] for r in written] == [r["id"] for r in rows]
    for row in written[:3]:
        assert row["prompt"].startswith("<|im_start|>system") and row["prompt"].endswith("<|im_start|>assistant\n")
        assert row["question"] in row["prompt"] and row["gold_text"] in row["prompt"]
        assert row["status"] in ("ok", "fallback", "degenerate")
        assert 0 < row["tokens"] <= MAX_NEW
        assert row["rationale"] and not contains_option_letter(row["rationale"], len(row["choices"]))
    assert [r["ki"] for r in written[:3]] == [True, True, False]
    assert "Facts that may help" in written[0]["prompt"] and "Facts that may help" not in written[2]["prompt"]


def test_prompt_over_the_context_is_an_error_row_not_a_crash(written):
    bad = written[3]
    assert bad["status"] == "error" and bad["error_kind"] == "context_length"
    assert "context length" in bad["error"] and bad["rationale"] is None and bad["tokens"] == 0


def test_hf_greedy_is_deterministic_across_batching(backend, rows, written):
    alone = write_rationales(rows[1:2], backend, ki=True, no_path="fallback", max_paths=40, generator={})
    assert alone[0]["rationale"] == written[1]["rationale"]
