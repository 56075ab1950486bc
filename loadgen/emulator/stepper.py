"""Step scheduling and acceptance sampling: the emulated engine's clock.

Every stream's chunk i is due at arrival + ttft + i * step, computed from the arrival time
rather than from the previous send, so timing never drifts. One timer per process serves
all streams: it wakes for the earliest due chunk and sends every chunk due by then, which
is what lets one process keep hundreds of streams on time.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
import time
from collections.abc import Callable, Sequence

__all__ = ["Stepper", "AcceptanceSampler", "PositionalSampler"]


class AcceptanceSampler:
    """Draws how many draft tokens a verify step accepts.

    `conditional[i]` is P(position i+1 accepted | positions 1..i accepted), so the expected
    tokens per step are 1 + p1 + p1*p2 + ... . An empty sequence means no speculation. The same
    probabilities serve every step: `emitted` (the request's output tokens so far) is for
    PositionalSampler, whose probabilities move along the output.
    """

    def __init__(self, conditional: Sequence[float], rng: random.Random) -> None:
        self.conditional = tuple(conditional)
        self._random = rng.random

    @property
    def draft_len(self) -> int:
        return len(self.conditional)

    def draw(self, emitted: int) -> int:
        accepted = 0
        for p in self.conditional:
            if self._random() >= p:
                break
            accepted += 1
        return accepted

    def draw_upto(self, draft_len: int, emitted: int) -> int:
        """A draw for a draft cut to its first `draft_len` positions."""
        accepted = 0
        for p in self.conditional[:draft_len]:
            if self._random() >= p:
                break
            accepted += 1
        return accepted


class PositionalSampler(AcceptanceSampler):
    """One request's draws when acceptance moves with the output position (an accept profile's
    position_slope): at `emitted` tokens out of max_tokens each probability p (already scaled by the
    request's u_r and temperature factor, profile.request_factor, and not clipped) becomes
    q = min(1, p * (1 + slope * (emitted / max_tokens - 0.5))) and then q + (1 - q) * boost. This is
    profile.step_probabilities() written for the hot path: the position factor is one multiply-add
    and each q is computed only up to the first rejection."""

    def __init__(self, conditional: Sequence[float], rng: random.Random, *, position_slope: float,
                 max_tokens: int, boost: float) -> None:
        super().__init__(conditional, rng)
        # 1 + slope * (emitted / max_tokens - 0.5) = offset + per_token * emitted
        self._offset = 1.0 - 0.5 * position_slope
        self._per_token = position_slope / max_tokens
        self._boost = boost

    def draw(self, emitted: int) -> int:
        return self._draw(self.conditional, emitted)

    def draw_upto(self, draft_len: int, emitted: int) -> int:
        return self._draw(self.conditional[:draft_len], emitted)

    def _draw(self, conditional: Sequence[float], emitted: int) -> int:
        factor = self._offset + self._per_token * emitted
        boost, random_ = self._boost, self._random
        accepted = 0
        for p in conditional:
            q = p * factor
            if q > 1.0:
                q = 1.0
            if random_() >= q + (1.0 - q) * boost:
                break
            accepted += 1
        return accepted


class Stepper:
    """Calls `step(now_ns)` of each scheduled item when due; `step` returns its next due time or None.

    `on_fire(now_ns)`, when given, runs once after each firing that stepped at least one item: the
    items stepped together are the emulator's notion of one engine iteration (batch step).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, early_ns: int = 0,
                 on_fire: Callable[[int], None] | None = None) -> None:
        self._loop = loop
        self._heap: list[tuple[int, int, Callable[[int], int | None]]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = 0
        # Timers fire on a millisecond grid; sending items that are due within `early_ns`
        # centres the send error on zero instead of making every chunk late.
        self._early_ns = early_ns
        self._on_fire = on_fire

    def schedule(self, due_ns: int, step: Callable[[int], int | None]) -> None:
        heapq.heappush(self._heap, (due_ns, next(self._order), step))
        if self._timer is None or due_ns < self._timer_due:
            self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        due = self._heap[0][0]
        self._timer_due = due
        self._timer = self._loop.call_later(max(0.0, (due - time.monotonic_ns()) / 1e9), self._fire)

    def _fire(self) -> None:
        self._timer = None
        heap = self._heap
        now = time.monotonic_ns()
        horizon = now + self._early_ns
        stepped = False
        while heap and heap[0][0] <= horizon:
            _, _, step = heapq.heappop(heap)
            stepped = True
            nxt = step(now)
            if nxt is not None:
                heapq.heappush(heap, (nxt, next(self._order), step))
        if stepped and self._on_fire is not None:
            self._on_fire(now)
        if heap:
            self._arm()
