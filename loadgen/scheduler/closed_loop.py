"""Closed loop: exactly N requests in flight; a slot sends its next request as soon as one ends."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Protocol

from loadgen.clock import MONOTONIC_CLOCK, Clock
from loadgen.workloads import Prompt

__all__ = ["Send", "closed_loop"]


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
