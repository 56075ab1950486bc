"""The one clock the scheduler and the sender read: monotonic nanoseconds, injected.

Passing the clock in, rather than calling `time` and `asyncio.sleep` inside, lets the tests run
the schedule in simulated time (tests/clock.py) and check it exactly, whatever the machine's load.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

__all__ = ["MONOTONIC_CLOCK", "Clock", "MonotonicClock"]


class Clock(Protocol):
    """Monotonic nanoseconds. The times read from it (scheduled, end) are compared with the
    transport's send and receive stamps, so beside the real transport it must count on their
    base, CLOCK_MONOTONIC; a fake transport stamps with the fake clock instead."""

    def now_ns(self) -> int: ...

    async def sleep_until(self, t_ns: int) -> None:
        """Return once now_ns() >= t_ns, never before; at once, without yielding, if that is already so."""
        ...


class MonotonicClock:
    """The real clock: time.monotonic_ns, the base the transport stamps sends and receives on."""

    def now_ns(self) -> int:
        return time.monotonic_ns()

    async def sleep_until(self, t_ns: int) -> None:
        # A loop, because uvloop's millisecond timers wake asyncio.sleep up to ~1 ms early, and a
        # request sent before its scheduled time would shorten its TTFT.
        while (delay_ns := t_ns - time.monotonic_ns()) > 0:
            await asyncio.sleep(delay_ns / 1e9)


#: the default of every `clock` parameter (the real clock has no state to share or keep apart)
MONOTONIC_CLOCK = MonotonicClock()
