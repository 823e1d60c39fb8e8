"""Concurrent requests to one replica share batches (kale_ray.serving.batching) on the real engine: the
calls queued while a batch runs make up the next batch, results equal each call run alone, a bad call
fails alone, and a cancelled member leaves the batch while the others complete."""

from __future__ import annotations

import threading
import time

import pytest

from kale_ray.engines.base import GenerationRequest
from kale_ray.engines.hf import HFEngine
from kale_ray.serving.batching import BatchedEngine
from kale_ray.serving.control import Cancelled, RequestControl, install_checkpoints, run_controlled

CLIENTS = 6


@pytest.fixture(scope="module")
def engine(tiny_llama_path):
    raw = HFEngine(tiny_llama_path)
    install_checkpoints(raw)
    return BatchedEngine(raw)


def _concurrently(engine: BatchedEngine, calls: list, batcher, controls: list | None = None) -> list:
    """Run `calls` in threads (each under its control) while the engine's lock is held; release it once
    all but the first (the batch leader, blocked on the engine) are queued."""
    controls = controls or [RequestControl(600) for _ in calls]
    results: list = [None] * len(calls)

    def run(i: int) -> None:
        try:
            results[i] = run_controlled(controls[i], calls[i])
        except Exception as err:  # noqa: BLE001 - the test inspects it
            results[i] = err

    with engine.engine._lock:
        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while batcher.queued() < len(calls) - 1:
            assert time.monotonic() < deadline, "the calls never queued"
            time.sleep(0.01)
    for t in threads:
        t.join(120)
    return results


def test_concurrent_scoring_shares_batches_and_equals_each_alone(engine):
    seqs = [engine.encode(f"Question {i}: which planet is the {i}th from the sun? Answer: Mars" * (1 + i % 3))
            for i in range(CLIENTS)]
    alone = [engine.score([s], top=2)[0] for s in seqs]
    runs = engine.scoring.runs
    together = _concurrently(engine, [lambda s=s: engine.score([s], top=2)[0] for s in seqs], engine.scoring)
    assert engine.scoring.runs - runs == 2  # the leader alone, then everyone who queued behind it
    for a, b in zip(alone, together, strict=True):
        assert a.ids == b.ids and b.logprobs[0] is None
        assert b.logprobs[1:] == pytest.approx(a.logprobs[1:], abs=1e-4)


def test_concurrent_generation_shares_batches_and_equals_each_alone(engine):
    requests = [GenerationRequest(engine.encode(f"Count to {i}:" + " one" * i), 4 + i) for i in range(CLIENTS)]
    alone = [engine.generate_batch([r])[0] for r in requests]
    runs = engine.generation.runs
    together = _concurrently(engine, [lambda r=r: engine.generate_batch([r])[0] for r in requests],
                             engine.generation)
    assert engine.generation.runs - runs == 2
    assert [g.ids for g in together] == [g.ids for g in alone]


def test_a_bad_call_fails_alone(engine):
    good = engine.encode("The sky is blue")
    bad = [engine.vocab_size + 5, 1, 2]  # a token id past the embedding table
    results = _concurrently(engine, [lambda: engine.score([good])[0], lambda: engine.score([bad])[0],
                                     lambda: engine.score([good])[0]], engine.scoring)
    assert isinstance(results[1], IndexError)
    assert results[0].ids == results[2].ids == good


def test_a_cancelled_member_leaves_the_batch_and_the_others_complete(engine):
    requests = [GenerationRequest(engine.encode(f"Tell me about number {i}"), 12) for i in range(3)]
    controls = [RequestControl(600) for _ in requests]
    controls[2].cancel()  # its client is gone before the batch runs
    results = _concurrently(engine, [lambda r=r: engine.generate_batch([r])[0] for r in requests],
                            engine.generation, controls)
    assert isinstance(results[2], Cancelled)
    assert [g.ids for g in results[:2]] == [engine.generate_batch([r])[0].ids for r in requests[:2]]
