"""Simulated time for the scheduler and sender tests: a `Clock` that jumps ahead instead of sleeping.

`FakeClock.run(main)` runs a coroutine on an event loop whose selector advances the clock
whenever the loop is idle, that is when no callback is ready and every task waits: on the clock,
or on another task that does. Time then moves straight to the earliest deadline, so a schedule of
minutes runs in milliseconds and every time is exact, whatever the machine's load. Everything
under test must wait through the clock: a real asyncio.sleep or socket would stall it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["FakeClock"]

T = TypeVar("T")


class FakeClock:
    """A loadgen.clock.Clock in simulated nanoseconds, starting at `start_ns`."""

    def __init__(self, start_ns: int = 0) -> None:
        self._now_ns = start_ns
        self._sleepers: list[tuple[int, int, asyncio.Future[None]]] = []  # heap of (due, arrival order, waker)
        self._order = itertools.count()  # equal deadlines wake in the order they were asked for

    def now_ns(self) -> int:
        return self._now_ns

    async def sleep_until(self, t_ns: int) -> None:
        if t_ns <= self._now_ns:
            return  # as the real clock: no yield when already due
        waker = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (t_ns, next(self._order), waker))
        await waker

    def advance(self) -> bool:
        """Jump to the earliest pending deadline and wake every sleeper due by then; False if none waits."""
        while self._sleepers and self._sleepers[0][2].done():  # a cancelled sleeper
            heapq.heappop(self._sleepers)
        if not self._sleepers:
            return False
        self._now_ns = self._sleepers[0][0]
        while self._sleepers and self._sleepers[0][0] <= self._now_ns:
            waker = heapq.heappop(self._sleepers)[2]
            if not waker.done():
                waker.set_result(None)
        return True

    def run(self, main: Coroutine[Any, Any, T]) -> T:
        """asyncio.run(main), in simulated time."""
        with asyncio.Runner(loop_factory=lambda: asyncio.SelectorEventLoop(_AdvancingSelector(self))) as runner:
            return runner.run(main)


class _AdvancingSelector(selectors.DefaultSelector):
    """The event loop polls with timeout 0 while callbacks are ready, and waits longer only when
    nothing can run: that moment is when simulated time moves on."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout != 0 and self._clock.advance():
            timeout = 0  # the woken sleepers are ready now; look at the file descriptors without waiting
        return super().select(timeout)
