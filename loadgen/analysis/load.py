"""The load actually held, computed from the records: requests in flight against the target, so a
client limit is never mistaken for a server result.

A request is in flight from the moment its bytes were handed to the connection (`sent_ns`) until
its exchange ended (`end_ns`). Computed after the run from the records alone, so records from
several worker processes (one system-wide monotonic clock) merge by concatenation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from loadgen.records import RequestRecord

__all__ = ["HOLD_THRESHOLD", "held_load", "in_flight_area"]

#: below this share of the target, the report warns that the client could not hold the load
HOLD_THRESHOLD = 0.98
#: the minimum is the lowest mean over a window this long, so the microseconds between a reply
#: and its slot's next send do not count as a dip
WINDOW_NS = 100_000_000


def held_load(records: Sequence[RequestRecord], target: int) -> dict:
    """Time-weighted mean in flight between the first send and the last start of a conversation (the
    steady part of a closed loop: after that, slots whose conversation ends stay empty and the load
    only drains), and the lowest mean over a 0.1 s window in that span."""
    sent = [r for r in records if r.sent_ns and r.end_ns >= r.sent_ns]
    mean = low = None
    if sent:
        starts = np.array([r.sent_ns for r in sent], dtype=np.int64)
        ends = np.array([r.end_ns for r in sent], dtype=np.int64)
        first = int(starts.min())
        last = max((r.sent_ns for r in sent if r.turn == 0), default=first)
        if last > first:
            area = in_flight_area(starts - first, ends - first)
            mean = float(area(np.array([last - first]))[0] / (last - first))
            edges = np.arange(0, last - first + 1, WINDOW_NS, dtype=np.float64)
            if edges.size > 1:
                low = float((np.diff(area(edges)) / WINDOW_NS).min())
    ratio = mean / target if (mean is not None and target) else None
    return {
        "target_concurrency": target,
        "mean_in_flight": mean,
        "min_in_flight": low,
        "achieved_ratio": ratio,
        "held": ratio is None or ratio >= HOLD_THRESHOLD,
    }


def in_flight_area(starts: np.ndarray, ends: np.ndarray):
    """A(t) = ∫₀ᵗ in-flight(u) du, exact: in flight is constant between events, so A is piecewise
    linear through its values at the events."""
    if not starts.size:
        return lambda t: np.zeros_like(np.asarray(t, dtype=np.float64))
    times = np.concatenate([starts, ends]).astype(np.float64)
    steps = np.concatenate([np.ones(starts.size), -np.ones(ends.size)])
    order = np.argsort(times, kind="stable")
    times, steps = times[order], steps[order]
    count = np.cumsum(steps)  # in flight just after each event
    knots = np.concatenate([[0.0], np.cumsum(count[:-1] * np.diff(times))])
    return lambda t: np.interp(t, times, knots, left=0.0, right=knots[-1])
