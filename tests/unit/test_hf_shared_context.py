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


def _reference(engine, seq, adapter):
    """Whole-sequence log-probs straight from the model, in plain torch."""
    import torch

    with torch.no_grad(), engine._use(adapter):
        logits = engine.model(input_ids=torch.tensor([seq])).logits[0].float()
    lp = torch.log_softmax(logits[:-1], -1).gather(-1, torch.tensor(seq[1:])[:, None])[:, 0]
    return lp.tolist(), (logits[:-1].argmax(-1) == torch.tensor(seq[1:])).tolist()


@pytest.mark.parametrize("adapter", [None, "a"])
def test_echo_scoring_on_shared_prefixes_equals_each_sequence_alone(engine, adapter):
    """The served echo path: a request's options (and several requests' items, coalesced) share their
    question's forward; every token's log-prob, top-k and greedy flag equal the whole sequence's."""
    seqs = [engine.encode(c + x) for c, x in _pairs()[:6]]  # two questions' options, interleaved below
    seqs = [seqs[0], seqs[4], seqs[1], seqs[2], seqs[5], seqs[3], engine.encode("Hello there, my friend."), engine.encode("x")[:1]]
    scored = engine.score(seqs, adapter, top=3)
    assert [s.ids for s in scored] == seqs
    for seq, one in zip(seqs, scored, strict=True):
        assert one.logprobs[0] is None and one.greedy[0] is True
        if len(seq) < 2:
            continue
        lps, greedy = _reference(engine, seq, adapter)
        assert one.logprobs[1:] == pytest.approx(lps, rel=2e-5, abs=1e-4)
        assert one.greedy[1:] == greedy
        for pos in range(1, len(seq)):
            assert seq[pos] in one.top[pos] and len(one.top[pos]) in (3, 4)
            assert max(one.top[pos].values()) >= one.logprobs[pos] - 1e-6
    groups = [sorted(m) for _, m in hf_shared_prefixes(seqs)]
    assert sorted(map(tuple, groups)) == sorted([(0, 2, 3, 5), (1, 4), (6,)])  # options of a question together


def hf_shared_prefixes(seqs):
    from kale_ray.engines.hf import _shared_prefixes

    return _shared_prefixes(seqs)
