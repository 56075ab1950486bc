"""Service-level objectives and goodput: how much of the throughput met every target.

`--slo ttft_p95=0.5,tpot_p95=0.05,e2e_p99=30` sets, per metric, a limit and the percentile of
requests that must meet it. A run meets an objective when that percentile of the metric is within
the limit. Goodput counts the requests that met every limit themselves (DistServe's definition):
requests and output tokens per second of those alone, over the same window as the throughput.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from loadgen.records import RequestRecord

__all__ = ["SLO_METRICS", "slo_report"]

#: metric -> one request's value in seconds (None where it is not defined for it): the one
#: definition of TTFT, TPOT and E2E per request, used by the report, the SLOs and requests.csv;
#: its keys are config.SLO_METRIC_NAMES, the metrics --slo accepts
SLO_METRICS = {
    "ttft": lambda r: (r.first_ns - r.scheduled_ns) * 1e-9,
    "tpot": lambda r: ((r.last_ns - r.first_ns) * 1e-9 / (r.output_tokens - 1)
                       if r.output_tokens > 1 and r.last_ns > r.first_ns else None),
    "e2e": lambda r: (r.last_ns - r.scheduled_ns) * 1e-9,
}


def slo_report(records: Sequence[RequestRecord], objectives: Sequence[tuple[str, float, float]],
               window_s: float) -> dict:
    ok = [r for r in records if r.ok and r.chunk_ns]
    checks, good = {}, np.ones(len(ok), dtype=bool)
    for metric, pct, limit in objectives:
        values = np.array([SLO_METRICS[metric](r) if SLO_METRICS[metric](r) is not None else np.nan for r in ok])
        defined = values[~np.isnan(values)]
        value = float(np.percentile(defined, pct)) if defined.size else None
        checks[f"{metric}_p{pct:g}"] = {"limit_s": limit, "value_s": value, "met": value is not None and value <= limit}
        good &= ~(values > limit)  # undefined (a one-token reply's TPOT) does not fail it
    good_records = [r for r, g in zip(ok, good) if g]
    return {
        "objectives": checks,
        "all_met": all(c["met"] for c in checks.values()),
        "good_requests": len(good_records),
        "good_fraction": len(good_records) / len(records) if records else None,  # failed requests are not good
        "goodput_rps": len(good_records) / window_s if window_s > 0 else None,
        "goodput_tps": sum(r.output_tokens for r in good_records) / window_s if window_s > 0 else None,
    }
