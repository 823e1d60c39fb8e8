"""One retry policy for every client of an OpenAI-compatible server (the synth writer, the scorer).

A busy server (429, 503) is live and will answer: it is waited out within a time budget, honouring
Retry-After, so however slow the machine a full queue costs time, never rows. A failure (connection
error, timeout, other 5xx, 408/409/425) is retried a bounded number of times with exponential backoff.
Any other answer is returned at once: a 4xx is the request's fault.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

BUSY_STATUS = frozenset({429, 503})
RETRY_STATUS = frozenset({408, 409, 425})
MAX_BACKOFF_S = 10.0
MAX_RETRY_AFTER_S = 60.0


def retryable(status: int) -> bool:
    return status in BUSY_STATUS or status in RETRY_STATUS or status >= 500


def retry_after(header: str | None, default: float) -> float:
    if not header:
        return default
    try:
        return min(max(float(header), 0.0), MAX_RETRY_AFTER_S)
    except ValueError:
        return default


@dataclass
class Outcome:
    response: Any | None  # the last response (None: no answer at all)
    retries: int          # requests sent again, busy answers included
    error: str | None     # why it gave up, None when the response is final (200 or a non-retryable answer)


def post_json(session: Any, url: str, body: dict[str, Any], *, timeout_s: float, max_retries: int,
              busy_wait_s: float, backoff_s: float, headers: dict[str, str] | None = None) -> Outcome:
    import requests

    failures = busy = 0
    busy_until = time.monotonic() + busy_wait_s
    last = ""
    while True:
        wait = min(backoff_s * (2 ** min(failures + busy, 16)), MAX_BACKOFF_S)
        try:
            resp = session.post(url, json=body, headers=headers, timeout=timeout_s)
        except requests.RequestException as err:
            resp, last = None, f"{type(err).__name__}: {err}"
        else:
            if resp.status_code == 200 or not retryable(resp.status_code):
                return Outcome(resp, failures + busy, None)
            last = f"HTTP {resp.status_code}: {resp.text[:300]}"
            wait = retry_after(resp.headers.get("Retry-After"), wait)
            if resp.status_code in BUSY_STATUS:
                busy += 1
                if time.monotonic() + wait > busy_until:
                    return Outcome(resp, failures + busy, f"server still busy after {busy_wait_s:.0f} s: {last}")
                time.sleep(wait)
                continue
        failures += 1
        if failures > max_retries:
            return Outcome(resp, failures + busy - 1, f"endpoint error after {failures} attempts: {last}")
        time.sleep(wait)
