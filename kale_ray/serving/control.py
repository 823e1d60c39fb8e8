"""Stopping a request's work inside the engine: when its client has gone, or when it has computed for
longer than its wall-time limit, so no request can pin a replica.

The engine runs a request synchronously in a worker thread, one forward pass per batch or decoded
token. A forward pre-hook on the engine's torch model checks the control of the request that the
current thread runs and raises there, between two forward passes, which unwinds the engine's call
(its lock and adapter context are released by their `with` blocks). Engines without a torch model in
this process (vLLM) are not interrupted; their requests are bounded by the token budget only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class Cancelled(Exception):
    """The client went away: nobody will read the result."""


class TimedOut(Exception):
    """The request computed for longer than its wall-time limit."""


class RequestControl:
    """One request's stop switch and clock. The clock starts at its first forward pass, so time spent
    waiting for the engine behind other requests does not count against it."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.started: float | None = None
        self.forwards = 0
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()

    def stop_reason(self) -> Exception | None:
        """Why this request must stop now (None: it may go on), without starting its clock."""
        if self._cancelled.is_set():
            return Cancelled(f"client disconnected after {self.forwards} forward passes")
        if self.started is not None and time.monotonic() - self.started > self.timeout_s:
            return TimedOut(f"the request computed for over {self.timeout_s:g} s "
                            f"({self.forwards} forward passes) and was stopped")
        return None

    def check(self) -> None:
        if self.started is None:
            self.started = time.monotonic()
        reason = self.stop_reason()
        if reason is not None:
            raise reason
        self.forwards += 1


_current = threading.local()


class GroupControl:
    """The controls of the requests that share one batch (kale_ray.serving.batching): the batch stops
    as soon as any of them must stop, and the batcher reruns the others without it."""

    def __init__(self, members: list[RequestControl]) -> None:
        self.members = members

    def check(self) -> None:
        for member in self.members:
            member.check()


def current_control() -> RequestControl | None:
    """The control of the request this thread runs, if any."""
    return getattr(_current, "control", None)


def run_controlled(control: RequestControl | GroupControl, fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` in this thread under `control` (call it in the worker thread); nests."""
    outer = getattr(_current, "control", None)
    _current.control = control
    try:
        return fn(*args)
    finally:
        _current.control = outer


def _checkpoint(module: Any, args: Any) -> None:
    control = getattr(_current, "control", None)
    if control is not None:
        control.check()


def install_checkpoints(engine: Any) -> bool:
    """Hook the engine's torch model (hf engine); False when it has none in this process."""
    model = getattr(engine, "model", None)
    register = getattr(model, "register_forward_pre_hook", None)
    if register is None:
        return False
    register(_checkpoint)
    return True
