"""HFEngine's batched generation on the REAL SmolLM2-135M-Instruct: prompts of different lengths and
budgets decode together token for token as each alone and as transformers' own `generate`; stop
strings, EOS and budgets end rows independently; sampling follows each request's seed."""

from __future__ import annotations

import pytest

from kale_ray.engines.base import GenerationRequest
from kale_ray.engines.hf import HFEngine

TEXTS = ["The three primary colors are", "Water boils at",
         "Once upon a time, in a small village near the mountains, there lived an old"]
BUDGETS = [6, 14, 10, 20]  # the chat prompt (last) ends with EOS well before 20 tokens


@pytest.fixture(scope="module")
def engine(smollm2_path):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread is faster on 2 shared cores
    yield HFEngine(smollm2_path)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def requests(engine):
    prompts = [engine.encode(t) for t in TEXTS]
    prompts.append(engine.chat_prompt([{"role": "user", "content": "Reply with one word: is the sky blue?"}]))
    assert len({len(p) for p in prompts}) == len(prompts)  # every row is padded differently
    return [GenerationRequest(p, n) for p, n in zip(prompts, BUDGETS, strict=True)]


@pytest.fixture(scope="module")
def batched(engine, requests):
    return engine.generate_batch(requests)


def test_batched_greedy_equals_one_at_a_time(engine, requests, batched):
    for request, gen in zip(requests, batched, strict=True):
        alone = engine.generate(request.ids, request.max_tokens)
        assert gen.ids == alone.ids and gen.text == alone.text and gen.finish_reason == alone.finish_reason
        assert gen.logprobs == pytest.approx(alone.logprobs, abs=1e-4)
    assert [len(g.ids) for g in batched[:3]] == BUDGETS[:3]
    assert [g.finish_reason for g in batched[:3]] == ["length"] * 3
    chat = batched[3]
    assert chat.finish_reason == "stop" and chat.ids[-1] in engine.eos_ids and len(chat.ids) < BUDGETS[3]
    assert chat.text == engine.decode(chat.ids[:-1]) and chat.text.strip()


def test_batched_greedy_equals_transformers_generate(engine, requests, batched):
    import torch

    width = max(len(r.ids) for r in requests)
    ids = torch.full((len(requests), width), engine.pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, r in enumerate(requests):
        ids[row, width - len(r.ids):] = torch.tensor(r.ids)
        mask[row, width - len(r.ids):] = 1
    with torch.no_grad():
        out = engine.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max(BUDGETS),
                                    do_sample=False, pad_token_id=engine.pad_id)
    for row, (r, gen) in enumerate(zip(requests, batched, strict=True)):
        new = out[row, width:].tolist()[: r.max_tokens]
        end = next((j for j, t in enumerate(new) if t in engine.eos_ids), None)
        assert gen.ids == (new if end is None else new[: end + 1])


def test_stop_strings_and_budgets_end_rows_independently(engine, requests, batched):
    full = batched[2].text
    word = full.split()[2]
    stopped = engine.generate_batch([
        GenerationRequest(requests[0].ids, requests[0].max_tokens),
        GenerationRequest(requests[1].ids, 0),
        GenerationRequest(requests[2].ids, requests[2].max_tokens, stop=["never appears", word]),
        GenerationRequest(requests[3].ids, requests[3].max_tokens, stop=["never appears"]),
    ])
    assert stopped[0].ids == batched[0].ids
    assert stopped[1].ids == [] and stopped[1].text == "" and stopped[1].finish_reason == "length"
    cut = stopped[2]
    assert cut.finish_reason == "stop" and cut.text == full[: full.index(word)]
    assert len(cut.ids) < len(batched[2].ids) and cut.ids == batched[2].ids[: len(cut.ids)]
    assert stopped[3].ids == batched[3].ids and stopped[3].finish_reason == "stop"


def test_echo_and_top_logprobs_in_a_padded_batch(engine, requests):
    gens = engine.generate_batch([GenerationRequest(r.ids, 2, top=3, echo=i == 1) for i, r in enumerate(requests)])
    scored = engine.score([requests[1].ids], top=3)[0]
    assert gens[0].prompt is None and gens[1].prompt.ids == requests[1].ids
    assert gens[1].prompt.logprobs[0] is None
    assert gens[1].prompt.logprobs[1:] == pytest.approx(scored.logprobs[1:], abs=1e-4)
    for gen in gens:
        for token, lp, top in zip(gen.ids, gen.logprobs, gen.top, strict=True):
            assert top[token] == lp and len(top) == 3 and lp == pytest.approx(max(top.values()))  # greedy


def test_sampling_follows_each_requests_seed(engine, requests):
    def sample(seed, others):
        row = GenerationRequest(requests[2].ids, 12, temperature=1.0, top_p=0.95, seed=seed)
        rest = [GenerationRequest(r.ids, 8, temperature=0.7, seed=99) for r in requests[:others]]
        return engine.generate_batch([*rest, row])[-1].ids

    alone = sample(7, 0)
    assert len(alone) == 12
    assert sample(7, 2) == alone  # the rows batched with it change nothing
    assert sample(8, 0) != alone


def _repeated_ngrams(ids: list[int], n: int) -> int:
    grams = [tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)]
    return len(grams) - len(set(grams))


def test_no_repeat_ngram_and_repetition_penalty_act_per_row(engine):
    """A prompt SmolLM2 loops on under greedy decoding: the n-gram ban leaves no 3-gram twice in what it
    generates (the unconstrained row does repeat, so the check can fail), the penalty changes the text,
    neither touches the rows batched with it, and 1.0 / 0 are the plain greedy decode."""
    prompt = engine.encode("List the days of the week: Monday, Tuesday, Wednesday, Thursday, Friday,")
    plain, banned, penalised, neutral = engine.generate_batch([
        GenerationRequest(prompt, 48), GenerationRequest(prompt, 48, no_repeat_ngram_size=3),
        GenerationRequest(prompt, 48, repetition_penalty=1.3),
        GenerationRequest(prompt, 48, repetition_penalty=1.0, no_repeat_ngram_size=0)])
    assert _repeated_ngrams(plain.ids, 3) > 0
    assert _repeated_ngrams(banned.ids, 3) == 0 and banned.ids != plain.ids
    assert penalised.ids != plain.ids
    assert neutral.ids == plain.ids
    alone = engine.generate_batch([GenerationRequest(prompt, 48, no_repeat_ngram_size=3)])[0]
    assert alone.ids == banned.ids
