"""Figures per load level of a stepped run (--concurrency-levels), and the level where the
client's acceptance length collapses.

Level j spans [j * D, (j + 1) * D) from the first request's scheduled time (the measured phase's
start: D = --level-duration). A request belongs to the level its scheduled time falls in (so the
levels' requests add up to the requests sent); its TTFT, TPOT and user TPS count there. Output TPS
and the client AL are those of the chunks that arrived within the level's window, as the time
series counts them: requests in flight at a boundary straddle two levels, and the drain after the
last level (at a falling concurrency) is in none.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from loadgen.records import RequestRecord

from .slo import SLO_METRICS
from .timeseries import chunk_sums

__all__ = ["COLLAPSE_AL_CHANGE", "COLLAPSE_TPOT_CHANGE", "level_figures", "find_collapse"]

#: a level whose client AL differs from the level before by more than this share is named the
#: collapse. Acceptance does not depend on the batch while K stays the same, and a level's AL over
#: a few hundred steps has a standard error of a few per cent (tokens per step spread by about 1
#: at K = 3): 10 % is beyond that noise, and far below the drop of an engine turning drafting off
#: (AL to 1.0)
COLLAPSE_AL_CHANGE = 0.10
#: where a level has no client AL (no decode steps seen), its TPOT p50 against the level before:
#: more than this share up or down is named instead
COLLAPSE_TPOT_CHANGE = 0.50


def _p(values: list[float], pct: float) -> float | None:
    return float(np.percentile(values, pct)) if values else None


def level_figures(records: Sequence[RequestRecord], levels: Sequence[int], level_s: float) -> list[dict]:
    """One dict per level (LevelFigures' keys); [] without a request sent."""
    scheduled = [r for r in records if r.scheduled_ns]
    if not scheduled or not levels:
        return []
    start = min(r.scheduled_ns for r in scheduled)
    width = int(level_s * 1e9)
    n = len(levels)
    members: list[list[RequestRecord]] = [[] for _ in range(n)]
    for r in scheduled:
        members[min(max(0, (r.scheduled_ns - start) // width), n - 1)].append(r)
    tokens, steps, step_tokens = chunk_sums(scheduled, start, width, n, clamp=False)
    rows = []
    ttft_of, tpot_of = SLO_METRICS["ttft"], SLO_METRICS["tpot"]
    for j, (concurrency, group) in enumerate(zip(levels, members, strict=True)):
        ok = [r for r in group if r.ok and r.chunk_ns]
        tpot = [t for t in map(tpot_of, ok) if t is not None]
        rows.append({
            "concurrency": int(concurrency), "start_s": round(j * level_s, 6), "end_s": round((j + 1) * level_s, 6),
            "requests": len(group), "completed": sum(1 for r in group if r.ok),
            "output_tokens": int(tokens[j]), "output_tps": float(tokens[j] / level_s),
            "ttft_p50_s": _p([ttft_of(r) for r in ok], 50), "tpot_p50_s": _p(tpot, 50), "tpot_p99_s": _p(tpot, 99),
            "user_tps_p50": _p([1.0 / t for t in tpot if t > 0], 50),
            "acceptance_length": float(step_tokens[j] / steps[j]) if steps[j] else None, "steps": int(steps[j]),
        })
    return rows


def find_collapse(rows: Sequence[dict]) -> dict | None:
    """The first level whose client AL differs from the level before by more than
    COLLAPSE_AL_CHANGE (or, where either has no AL, whose TPOT p50 does by more than
    COLLAPSE_TPOT_CHANGE): LevelCollapse's keys; None where no level does."""
    for before, row in zip(rows, rows[1:], strict=False):
        for metric, threshold in (("acceptance_length", COLLAPSE_AL_CHANGE), ("tpot_p50_s", COLLAPSE_TPOT_CHANGE)):
            was, now = before[metric], row[metric]
            if was is None or now is None:
                continue  # the next figure, where this one is missing
            change = (now - was) / was if was else 0.0
            if abs(change) > threshold:
                return {"concurrency": row["concurrency"], "previous_concurrency": before["concurrency"],
                        "metric": metric, "previous": was, "value": now, "change": change, "threshold": threshold}
            break  # judged by its AL: the TPOT is only a stand-in
    return None
