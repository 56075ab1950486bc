"""Per-second time series of a run, from the records alone: a run can be looked at over time
without Prometheus (and with several worker processes, the records already hold everything)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from loadgen.records import RequestRecord

from .load import in_flight_area

__all__ = ["chunk_sums", "time_series"]


def time_series(records: Sequence[RequestRecord], interval_s: float = 1.0) -> list[dict]:
    """One row per interval from the first send: t_s (interval start), output_tps (tokens of the
    chunks that arrived in it / interval), in_flight (time-weighted mean), acceptance_length
    (tokens / steps of the chunks in it, first chunks excluded; null without steps), completed
    and failed (requests that ended in it)."""
    sent = [r for r in records if r.sent_ns]
    if not sent:
        return []
    start = min(r.sent_ns for r in sent)
    width = int(interval_s * 1e9)
    end = max(max(r.end_ns, r.last_ns) for r in sent)
    n = max(1, -(-(end - start) // width))
    tokens, steps, step_tokens = chunk_sums(sent, start, width, n, clamp=True)
    ended = [r for r in sent if r.end_ns]
    done = np.zeros(n)
    failed = np.zeros(n)
    for r in ended:
        (failed if r.error is not None else done)[min((r.end_ns - start) // width, n - 1)] += 1
    spans = [r for r in ended if r.end_ns >= r.sent_ns]
    area = in_flight_area(np.array([r.sent_ns - start for r in spans], dtype=np.int64),
                          np.array([r.end_ns - start for r in spans], dtype=np.int64))
    edges = np.arange(n + 1, dtype=np.float64) * width
    in_flight = np.diff(area(edges)) / width
    return [{"t_s": round(i * interval_s, 3), "output_tps": float(tokens[i] / interval_s),
             "in_flight": float(in_flight[i]),
             "acceptance_length": float(step_tokens[i] / steps[i]) if steps[i] else None,
             "completed": int(done[i]), "failed": int(failed[i])} for i in range(n)]


def chunk_sums(records: Sequence[RequestRecord], start_ns: int, width_ns: int, n: int, *,
               clamp: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per window j = [start + j * width, start + (j + 1) * width), j < n: the tokens of the chunks
    that arrived in it, and the decode steps (each successful request's chunks after its first, as
    the report's client AL counts them) and their tokens. clamp: chunks past the last window count
    in it (the time series' last interval runs to the end); else chunks outside the windows are left
    out (a stepped run's drain after its last level)."""
    tokens, steps, step_tokens = np.zeros(n), np.zeros(n), np.zeros(n)
    for r in records:
        if not r.chunk_ns:
            continue
        at = (np.frombuffer(r.chunk_ns, dtype=np.int64) - start_ns) // width_ns
        counts = np.frombuffer(r.chunk_tokens, dtype=np.int32).astype(np.float64)
        if clamp:
            at = np.minimum(at, n - 1)
        inside = (at >= 0) & (at < n)
        np.add.at(tokens, at[inside], counts[inside])
        if r.ok:
            later = inside[1:]
            np.add.at(steps, at[1:][later], 1.0)
            np.add.at(step_tokens, at[1:][later], counts[1:][later])
    return tokens, steps, step_tokens
