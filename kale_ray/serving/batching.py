"""Concurrent requests to one replica share forward passes.

Serve runs each request in its own worker thread. `BatchedEngine` wraps the hf engine so that its
scoring and generation calls are coalesced: a call queues its items and waits for the engine; whoever
gets the engine next runs every queued call of its adapter as one batch (the engine sorts the rows by
length and batches them under its token budget). So N clients cost about one batched pass per round
instead of N passes in a row, with results equal to each call run alone (up to float rounding of the
padded shapes).

Each call keeps its own `RequestControl`: a batch runs under the group of its members' controls, and
when one member is cancelled or times out the batch stops, that member gets its error and the others
run again without it. An error that is not a stop (a token id the engine refuses) reruns the calls one
by one, so a bad request fails alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from kale_ray.engines.base import Generation, GenerationRequest, Scored
from kale_ray.serving.control import (
    Cancelled,
    GroupControl,
    RequestControl,
    TimedOut,
    current_control,
    run_controlled,
)


@dataclass
class _Call:
    key: Hashable
    items: list[Any]
    control: RequestControl | None
    future: Future[list[Any]] = field(default_factory=Future)


class Batcher:
    """Runs `fn(key, items) -> results` (one result per item) for concurrent callers, one batch at a
    time. `runs` counts the batches (the tests read it)."""

    def __init__(self, fn: Callable[[Hashable, list[Any]], list[Any]]) -> None:
        self.fn = fn
        self.runs = 0
        self._queue: list[_Call] = []
        self._queue_lock = threading.Lock()
        self._run_lock = threading.Lock()

    def queued(self) -> int:
        return len(self._queue)

    def __call__(self, key: Hashable, items: list[Any]) -> list[Any]:
        mine = _Call(key, items, current_control())
        with self._queue_lock:
            self._queue.append(mine)
        with self._run_lock:
            if not mine.future.done():
                with self._queue_lock:
                    calls = [c for c in self._queue if c.key == key]
                    self._queue = [c for c in self._queue if c.key != key]
                self._run(key, calls)
        return mine.future.result()

    def _run(self, key: Hashable, calls: list[_Call]) -> None:
        while calls:
            live = []
            for call in calls:
                reason = call.control.stop_reason() if call.control is not None else None
                if reason is None:
                    live.append(call)
                else:
                    call.future.set_exception(reason)
            if not live:
                return
            self.runs += 1
            group = GroupControl([c.control for c in live if c.control is not None])
            try:
                results = run_controlled(group, self.fn, key, [item for c in live for item in c.items])
            except (Cancelled, TimedOut):
                calls = live  # a member must stop: the loop gives it its error and reruns the others
                continue
            except Exception as err:
                if len(live) == 1:
                    live[0].future.set_exception(err)
                else:
                    for call in live:
                        self._run(key, [call])
                return
            start = 0
            for call in live:
                call.future.set_result(results[start:start + len(call.items)])
                start += len(call.items)
            return


class BatchedEngine:
    """The hf engine with coalesced `score` and `generate_batch`; everything else is the engine's."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.scoring = Batcher(self._score)
        self.generation = Batcher(self._generate)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    def _score(self, key: Hashable, items: list[tuple[list[int], int]]) -> list[Scored]:
        adapter, top = key  # type: ignore[misc]
        return self.engine.score([seq for seq, _ in items], adapter, top)

    def _generate(self, adapter: Hashable, requests: list[GenerationRequest]) -> list[Generation]:
        return self.engine.generate_batch(requests, adapter)

    def score(self, seqs: list[list[int]], adapter: str | None = None, top: int = 0) -> list[Scored]:
        return self.scoring((adapter, top), [(list(seq), top) for seq in seqs])

    def generate_batch(self, requests: Sequence[GenerationRequest], adapter: str | None = None) -> list[Generation]:
        for request in requests:  # a request the engine refuses fails before it joins a batch
            if not request.ids:
                raise ValueError("a prompt needs at least one token")
            self.engine.check_length(len(request.ids), request.max_tokens)
        return self.generation(adapter, list(requests))

    def generate(self, ids: list[int], max_tokens: int, temperature: float = 0.0, top_p: float = 1.0,
                 stop: list[str] | None = None, seed: int | None = None, adapter: str | None = None,
                 top: int = 0, echo: bool = False) -> Generation:
        request = GenerationRequest(list(ids), max_tokens, temperature, top_p, list(stop or []), seed, top, echo)
        return self.generate_batch([request], adapter)[0]
