"""Seeded fault injection: what an overloaded, flaky or misconfigured server does to a client.

Each request draws at most one fault, from one uniform number against the cumulative rates, so
the rates add up as given (5 % of each of six kinds is 30 % of requests faulted). A stream fault
strikes at the first step after a token count drawn uniformly from the reply's first half (so
it always strikes, whatever the acceptance):

- an HTTP status (429, 500, 503, ...) instead of the stream, with the engine's error body;
- `stream_error`: the engine's own mid-stream error event (where it has one; TRT-LLM cuts the
  response instead), then the stream ends;
- `reset`: the connection is reset (RST) mid-stream;
- `stall`: no bytes for `stall_s` seconds, then the stream goes on;
- `malformed`: one event whose JSON is cut short, then the stream goes on.

Server-wide: `slow_start_s` answers 503 to everything for that long after start (an engine still
loading its weights), and `restart_after_s` drops every connection and stops listening for
`restart_down_s` once (a crashed and restarted server).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Faults", "FaultPlan", "STREAM_FAULTS", "parse_fault_flag"]

STREAM_FAULTS = ("stream_error", "reset", "stall", "malformed")


@dataclass(frozen=True)
class Faults:
    status_rates: tuple[tuple[int, float], ...] = ()  # ((429, 0.05), (503, 0.05), ...)
    stream_error: float = 0.0
    reset: float = 0.0
    stall: float = 0.0
    stall_s: float = 5.0
    malformed: float = 0.0
    slow_start_s: float = 0.0
    restart_after_s: float | None = None
    restart_down_s: float = 1.0

    def __post_init__(self) -> None:
        rates = [r for _, r in self.status_rates] + [getattr(self, k) for k in STREAM_FAULTS]
        if any(not 0.0 <= r <= 1.0 for r in rates) or sum(rates) > 1.0 + 1e-9:
            raise ValueError("fault rates must lie in [0, 1] and add up to at most 1")
        if any(not 400 <= status <= 599 for status, _ in self.status_rates):
            raise ValueError("injected HTTP statuses must be 4xx or 5xx")
        if self.stall_s < 0 or self.slow_start_s < 0 or self.restart_down_s < 0:
            raise ValueError("fault durations must be >= 0")

    @property
    def any_per_request(self) -> bool:
        return bool(self.status_rates) or any(getattr(self, k) for k in STREAM_FAULTS)


@dataclass(frozen=True)
class FaultPlan:
    """What happens to one request: an HTTP status, or a stream fault once `at_token` tokens went out."""

    status: int | None = None
    stream: str | None = None
    at_token: int = 0


NO_FAULT = FaultPlan()


def draw(faults: Faults, rng: random.Random, max_tokens: int) -> FaultPlan:
    """One request's fault (NO_FAULT for most), from one draw of the seeded generator."""
    u = rng.random()
    for status, rate in faults.status_rates:
        if u < rate:
            return FaultPlan(status=status)
        u -= rate
    for kind in STREAM_FAULTS:
        rate = getattr(faults, kind)
        if u < rate:
            return FaultPlan(stream=kind, at_token=rng.randint(1, max(1, max_tokens // 2)))
        u -= rate
    return NO_FAULT


def parse_fault_flag(text: str) -> tuple[int, float]:
    """'503=0.05' -> (503, 0.05) for --fail-status."""
    status, sep, rate = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return int(status), float(rate)
    except ValueError:
        raise ValueError(f"--fail-status takes STATUS=RATE, e.g. 503=0.05; got {text!r}") from None
