"""HFEngine coalesces concurrent calls: clients of one Serve replica share forward passes. The calls
queued while a batch runs make up the next batch, results equal each call run alone, and one bad
call fails alone."""

from __future__ import annotations

import threading
import time

import pytest

from kale_ray.engines.base import GenerationRequest
from kale_ray.engines.hf import HFEngine

CLIENTS = 6


@pytest.fixture(scope="module")
def engine(tiny_llama_path):
    return HFEngine(tiny_llama_path)


def _concurrently(engine: HFEngine, calls: list, coalescer) -> list:
    """Run `calls` in threads while the model lock is held, release it once all but the first (the
    batch leader, blocked on the model) are queued: exactly two batches must serve them."""
    results: list = [None] * len(calls)

    def run(i: int) -> None:
        try:
            results[i] = calls[i]()
        except Exception as err:  # noqa: BLE001 - the test inspects it
            results[i] = err

    runs_before = coalescer.runs
    with engine._lock:
        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(coalescer._queue) < len(calls) - 1:
            assert time.monotonic() < deadline, "the calls never queued"
            time.sleep(0.01)
    for t in threads:
        t.join(60)
    assert coalescer.runs - runs_before == 2
    return results


def test_concurrent_scoring_shares_batches_and_equals_each_alone(engine):
    texts = [f"Question {i}: which planet is the {i}th from the sun? Answer: Mars" * (1 + i % 3)
             for i in range(CLIENTS)]
    seqs = [engine.encode(t) for t in texts]
    alone = [engine.score([s], top=2)[0] for s in seqs]
    together = _concurrently(engine, [lambda s=s: engine.score([s], top=2)[0] for s in seqs],
                             engine._score_calls)
    for a, b in zip(alone, together, strict=True):
        assert a.ids == b.ids
        assert b.logprobs[0] is None
        assert b.logprobs[1:] == pytest.approx(a.logprobs[1:], abs=1e-4)


def test_concurrent_generation_shares_batches_and_equals_each_alone(engine):
    requests = [GenerationRequest(engine.encode(f"Count to {i}:" + " one" * i), 4 + i) for i in range(CLIENTS)]
    alone = [engine.generate_batch([r])[0] for r in requests]
    together = _concurrently(engine, [lambda r=r: engine.generate_batch([r])[0] for r in requests],
                             engine._generate_calls)
    assert [g.ids for g in together] == [g.ids for g in alone]


def test_a_bad_call_fails_alone(engine):
    good = engine.encode("The sky is blue")
    bad = [engine.vocab_size + 5, 1, 2]  # a token id past the embedding table
    calls = [lambda: engine.score([good])[0], lambda: engine.score([bad])[0], lambda: engine.score([good])[0]]
    results: list = [None] * 3

    def run(i: int) -> None:
        try:
            results[i] = calls[i]()
        except Exception as err:  # noqa: BLE001
            results[i] = err

    with engine._lock:
        threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        while len(engine._score_calls._queue) < 2:
            time.sleep(0.01)
    for t in threads:
        t.join(60)
    assert isinstance(results[1], Exception)
    assert results[0].ids == results[2].ids == good
