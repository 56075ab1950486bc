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

__all__ = ["HOLD_THRESHOLD", "LATE_P99_S", "held_load", "held_rate", "in_flight_area"]

#: open loop: the client held the schedule if its sends' p99 lateness stayed below this
LATE_P99_S = 0.010

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


def held_rate(records: Sequence[RequestRecord], target_rate: float) -> dict:
    """Open loop: the rate achieved against the schedule's, and how late requests left (sent -
    scheduled, conversations' first turns). Held when the achieved rate is within 2 % of the
    schedule's and the p99 lateness is below LATE_P99_S: a client that sends late bills its own
    delay to TTFT, which counts from the scheduled time."""
    first = [r for r in records if r.turn == 0]
    scheduled = np.array(sorted(r.scheduled_ns for r in first), dtype=np.int64)
    sent = np.array(sorted(r.sent_ns for r in first if r.sent_ns), dtype=np.int64)
    late = np.array([r.sent_ns - r.scheduled_ns for r in first if r.sent_ns], dtype=np.float64) * 1e-9
    span = lambda a: (a[-1] - a[0]) * 1e-9 if a.size > 1 else 0.0  # noqa: E731
    scheduled_rate = (scheduled.size - 1) / span(scheduled) if span(scheduled) else None
    achieved = (sent.size - 1) / span(sent) if span(sent) else None
    ratio = achieved / scheduled_rate if achieved and scheduled_rate else None
    p99 = float(np.percentile(late, 99)) if late.size else None
    return {
        "target_rate": target_rate,
        "scheduled_rate": scheduled_rate,
        "achieved_rate": achieved,
        "achieved_ratio": ratio,
        "late_p50_s": float(np.median(late)) if late.size else None,
        "late_p99_s": p99,
        "late_max_s": float(late.max()) if late.size else None,
        # bool(): the ratio is a numpy float, and a numpy bool is no JSON boolean for the report
        "held": bool((ratio is None or ratio >= HOLD_THRESHOLD) and (p99 is None or p99 <= LATE_P99_S)),
    }
