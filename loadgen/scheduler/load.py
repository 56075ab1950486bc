"""The load actually held: requests in flight against the target, so a client limit is never
mistaken for a server result."""

from __future__ import annotations

import time

__all__ = ["LoadTracker", "HOLD_THRESHOLD"]

#: below this share of the target, the report warns that the client could not hold the load
HOLD_THRESHOLD = 0.98


class LoadTracker:
    """Counts requests in flight; integrates the count over time between the first and the last
    send (the steady part of a closed loop: the tail after the last send only drains). The minimum
    is the lowest average over one sampling period, so the microseconds between a reply and the
    next send of its slot do not count as a dip."""

    __slots__ = ("count", "_area", "_last_ns", "first_send_ns", "last_send_ns", "_area_at_last_send", "_samples",
                 "_sample_mark")

    def __init__(self) -> None:
        self.count = 0
        self._area = 0
        self._last_ns: int | None = None
        self.first_send_ns: int | None = None
        self.last_send_ns: int | None = None
        self._area_at_last_send = 0
        self._samples: list[tuple[int, float]] = []  # (end of period, mean in flight over it)
        self._sample_mark: tuple[int, int] | None = None  # (time, area) at the previous sample

    def _advance(self, now: int) -> None:
        if self._last_ns is not None:
            self._area += self.count * (now - self._last_ns)
        self._last_ns = now

    def started(self) -> None:
        now = time.monotonic_ns()
        self._advance(now)
        self.count += 1
        if self.first_send_ns is None:
            self.first_send_ns = now
        self.last_send_ns = now
        self._area_at_last_send = self._area

    def finished(self) -> None:
        self._advance(time.monotonic_ns())
        self.count -= 1

    def sample(self) -> None:
        if self.first_send_ns is None:
            return
        now = time.monotonic_ns()
        self._advance(now)
        if self._sample_mark is not None and now > self._sample_mark[0]:
            self._samples.append((now, (self._area - self._sample_mark[1]) / (now - self._sample_mark[0])))
        self._sample_mark = (now, self._area)

    def summary(self, target: int) -> dict:
        span = (self.last_send_ns or 0) - (self.first_send_ns or 0)
        mean = self._area_at_last_send / span if span > 0 else float(self.count or target)
        ratio = mean / target if target else None
        # periods that ended before the last send: the drain after it is not a lack of load
        steady = [value for end, value in self._samples if end <= (self.last_send_ns or 0)]
        return {
            "target_concurrency": target,
            "mean_in_flight": mean,
            "min_in_flight": min(steady) if steady else None,
            "achieved_ratio": ratio,
            "held": ratio is None or ratio >= HOLD_THRESHOLD,
        }
