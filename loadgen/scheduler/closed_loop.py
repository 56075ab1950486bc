"""Closed loop: exactly N requests in flight; a slot sends its next request as soon as one ends.
Stepped (--concurrency-levels): N changes at fixed times, level by level."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from loadgen.clock import MONOTONIC_CLOCK, Clock
from loadgen.workloads import Prompt

__all__ = ["Send", "closed_loop", "stepped_closed_loop"]


class Send(Protocol):
    async def __call__(self, prompt: Prompt, scheduled_ns: int) -> None: ...


async def closed_loop(prompts: Iterator[Prompt], concurrency: int, send: Send, *,
                      limit: int | None = None, deadline_ns: int | None = None,
                      stopping: Callable[[], bool] = lambda: False, clock: Clock = MONOTONIC_CLOCK) -> int:
    """Run until `limit` requests were issued, the clock passed deadline_ns, or stopping() is true.

    A request is scheduled at the moment its slot frees up, so TTFT counts from then; any delay
    before the bytes leave (event-loop lag, connection wait) shows up as client queueing.
    Requests in flight at the deadline run to completion. Returns the number issued.
    """
    issued = 0

    async def slot() -> None:
        nonlocal issued
        while not stopping():
            now = clock.now_ns()
            if (limit is not None and issued >= limit) or (deadline_ns is not None and now >= deadline_ns):
                return
            issued += 1
            await send(next(prompts), now)

    await asyncio.gather(*(slot() for _ in range(concurrency)))
    return issued


async def stepped_closed_loop(prompts: Iterator[Prompt], levels: Sequence[int], level_ns: int, start_ns: int,
                              send: Send, *, stopping: Callable[[], bool] = lambda: False,
                              clock: Clock = MONOTONIC_CLOCK) -> int:
    """A closed loop whose concurrency steps through `levels`: level j runs from start_ns + j *
    level_ns for level_ns with levels[j] slots, and nothing is issued at or after the last level's end.

    Slot i sends while i < the level's concurrency. Moving up, the new slots send their first
    request at the boundary; moving down, the slots above the new level finish the request they
    have in flight and issue nothing more until a level that has them again. A request waiting for
    a boundary (or for start_ns) is scheduled at that time, otherwise when its slot freed up, so
    TTFT counts from then. Returns the number issued.
    """
    issued = 0
    end_ns = start_ns + len(levels) * level_ns

    def due_at(slot: int, t_ns: int) -> int | None:
        """The first time from t_ns at which `slot` may send; None: no later level has it."""
        t_ns = max(t_ns, start_ns)
        if t_ns >= end_ns:
            return None
        level = (t_ns - start_ns) // level_ns
        for later in range(level, len(levels)):
            if slot < levels[later]:
                return t_ns if later == level else start_ns + later * level_ns
        return None

    async def run(slot: int) -> None:
        nonlocal issued
        while not stopping():
            now = clock.now_ns()
            due = due_at(slot, now)
            if due is None:
                return
            if due > now:
                await clock.sleep_until(due)
                if stopping():
                    return
            issued += 1
            await send(next(prompts), due)

    await asyncio.gather(*(run(slot) for slot in range(max(levels, default=0))))
    return issued
