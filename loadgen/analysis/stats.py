"""Distribution summaries used for every latency and throughput figure."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["distribution", "PERCENTILES"]

PERCENTILES = (25, 50, 75, 90, 95, 99)


def distribution(values: Sequence[float] | np.ndarray) -> dict[str, float | int | None]:
    """{count, mean, std, min, p25, p50, p75, p90, p95, p99, max}; percentiles interpolate linearly.

    [1, 2, 3, 4] -> mean 2.5, p50 2.5, p25 1.75. An empty input gives count 0 and None elsewhere.
    """
    arr = np.asarray(values, dtype=np.float64)
    keys = ["mean", "std", "min", *(f"p{p}" for p in PERCENTILES), "max"]
    if arr.size == 0:
        return {"count": 0, **dict.fromkeys(keys)}
    pct = np.percentile(arr, PERCENTILES)
    out: dict[str, float | int | None] = {"count": int(arr.size), "mean": float(arr.mean()), "std": float(arr.std()),
                                          "min": float(arr.min())}
    out.update({f"p{p}": float(v) for p, v in zip(PERCENTILES, pct)})
    out["max"] = float(arr.max())
    return out
