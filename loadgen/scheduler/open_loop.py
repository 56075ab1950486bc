"""Open loop: requests arrive at a target rate whatever the server does, as users do.

Every send time is computed before the run (`arrival_offsets`), so a slow server or a busy
client never changes when requests were meant to go: TTFT counts from the scheduled time, and
any lateness of the client shows up as client queueing (sent - scheduled).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from loadgen.clock import MONOTONIC_CLOCK, Clock
from loadgen.workloads import Prompt

from .closed_loop import Send

__all__ = ["ARRIVALS", "arrival_offsets", "open_loop"]

ARRIVALS = ("poisson", "gamma", "constant")


def arrival_offsets(rate: float, *, count: int | None = None, duration_s: float | None = None,
                    arrival: str = "poisson", burstiness: float = 1.0, ramp_up_s: float = 0.0,
                    seed: int = 0) -> np.ndarray:
    """Send times (ns from the start) of `count` arrivals, or of all arrivals within `duration_s`.

    Gaps are exponential (poisson), gamma with shape `burstiness` (1 is poisson; below 1 burstier,
    above 1 more regular; the mean stays 1/rate), or constant. With `ramp_up_s`, the rate rises
    linearly from 0 to `rate` over that time: arrivals are drawn at unit rate in the process's own
    time Λ(t) = ∫ rate and mapped back through Λ's inverse, which keeps the gap distribution's shape.
    """
    # enough unit-rate gaps for the count, or for the duration's expected arrivals plus a margin
    if count is not None:
        expected = count
    elif duration_s is not None:
        expected = int(rate * duration_s * 1.2 + 10 * (rate * duration_s) ** 0.5 + 20)
    else:
        raise ValueError("give a count or a duration")
    rng = np.random.default_rng(seed)
    if arrival == "constant":
        gaps = np.ones(expected)
    elif arrival == "gamma":
        gaps = rng.gamma(burstiness, 1.0 / burstiness, expected)
    elif arrival == "poisson":
        gaps = rng.exponential(1.0, expected)
    else:
        raise ValueError(f"unknown arrival process {arrival!r}; choose one of {', '.join(ARRIVALS)}")
    work = np.cumsum(gaps) - gaps[0]  # the first request goes at once
    ramp_work = rate * ramp_up_s / 2  # Λ at the end of the ramp
    t = np.where(work < ramp_work, np.sqrt(2 * ramp_up_s * work / rate) if ramp_up_s else 0.0,
                 ramp_up_s + (work - ramp_work) / rate)
    if duration_s is not None:
        t = t[t < duration_s]
    return (t * 1e9).astype(np.int64)


async def open_loop(prompts: Iterator[Prompt], offsets_ns: Sequence[int], start_ns: int, send: Send, *,
                    stopping: Callable[[], bool] = lambda: False, clock: Clock = MONOTONIC_CLOCK) -> int:
    """Send one request per offset at start_ns + offset on `clock` (never before), without waiting
    for earlier ones; then wait for all of them. Returns the number sent."""
    running: set[asyncio.Task[None]] = set()
    sent = 0
    try:
        for offset in offsets_ns:
            if stopping():
                break
            due = start_ns + int(offset)
            await clock.sleep_until(due)
            if stopping():
                break
            task = asyncio.ensure_future(send(next(prompts), due))
            running.add(task)
            task.add_done_callback(running.discard)
            sent += 1
        if running:
            await asyncio.gather(*running)
    except asyncio.CancelledError:
        for task in running:
            task.cancel()  # each records itself as cancelled
        await asyncio.gather(*running, return_exceptions=True)
        raise
    return sent
