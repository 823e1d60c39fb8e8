"""Multiple-choice scoring on a shared context's key/value cache equals scoring each whole sequence."""

import pytest

from kale_ray.data.format import answer_text, prompt_text
from kale_ray.engines.base import EngineBase
from kale_ray.engines.hf import HFEngine
from tests.ray.serve_helpers import make_lora_adapter

QUESTION = "Which gas do plants take in from the air to make food?"
OPTIONS = ["carbon dioxide", "oxygen", "nitrogen gas from deep inside the soil around the roots", "O"]


def _pairs() -> list[tuple[str, str]]:
    pairs = [(prompt_text(QUESTION), answer_text(o)) for o in OPTIONS]
    pairs += [(prompt_text("What is the capital of France?"), answer_text(o)) for o in ("Paris", "Lyon")]
    pairs += [("The following statement is true:\n", "Plants take in carbon dioxide."),
              ("", "an empty context"), ("no continuation", "")]
    return pairs


@pytest.fixture(scope="module")
def engine(smollm2_path, tmp_path_factory):
    adapter = make_lora_adapter(smollm2_path, tmp_path_factory.mktemp("lora") / "adapter")
    return HFEngine(smollm2_path, adapters={"a": str(adapter)})


@pytest.mark.parametrize("adapter", [None, "a"])
def test_shared_context_scores_equal_whole_sequences(engine, adapter):
    pairs = _pairs()
    fast = engine.loglikelihood(pairs, adapter)
    whole = EngineBase.loglikelihood(engine, pairs, adapter)
    assert len(fast) == len(whole) == len(pairs)
    for (ll, greedy), (ref, ref_greedy) in zip(fast, whole, strict=True):
        assert ll == pytest.approx(ref, rel=2e-5, abs=1e-4)  # fp32 sums over different GEMM shapes
        assert greedy == ref_greedy
    assert fast[-1] == (0.0, True)  # nothing to score
    assert fast[0][0] > fast[2][0]  # the long, unlikely option scores lower


def test_many_continuations_are_chunked_with_the_same_scores(engine, monkeypatch):
    from kale_ray.engines import hf as hf_engine

    pairs = [("The following statement is true:\n", f"Plants take in gas number {i} at night.") for i in range(12)]
    whole = EngineBase.loglikelihood(engine, pairs)
    monkeypatch.setattr(hf_engine, "CONT_CHUNK_TOKENS", 25)  # about two rows a chunk
    for (ll, greedy), (ref, ref_greedy) in zip(engine.loglikelihood(pairs), whole, strict=True):
        assert ll == pytest.approx(ref, rel=2e-5, abs=1e-4) and greedy == ref_greedy


def test_adapter_changes_scores(engine):
    pairs = _pairs()[:4]
    base, tuned = engine.loglikelihood(pairs), engine.loglikelihood(pairs, "a")
    assert all(abs(b[0] - t[0]) > 1e-3 for b, t in zip(base, tuned, strict=True))
