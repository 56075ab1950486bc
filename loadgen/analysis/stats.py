"""Distribution summaries used for every latency and throughput figure."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["distribution", "PERCENTILES"]

PERCENTILES = (25, 50, 75, 90, 95, 99)


def distribution(values: Sequence[float] | np.ndarray, *, reorder: bool = False) -> dict[str, float | int | None]:
    """{count, mean, std, min, p25, p50, p75, p90, p95, p99, max}; percentiles interpolate linearly.

    [1, 2, 3, 4] -> mean 2.5, p50 2.5, p25 1.75. An empty input gives count 0 and None elsewhere.
    No temporary the size of the input is made beyond what `reorder=True` avoids: with it, a
    float64 array passed in is partially sorted in place instead of copied (for samples of
    millions of chunk gaps that the caller no longer needs in order).
    """
    arr = np.asarray(values, dtype=np.float64)
    keys = ["mean", "std", "min", *(f"p{p}" for p in PERCENTILES), "max"]
    if arr.size == 0:
        return {"count": 0, **dict.fromkeys(keys)}
    mean = float(arr.mean())
    variance = max(float(np.dot(arr, arr)) / arr.size - mean * mean, 0.0)  # no (arr - mean) temporary
    out: dict[str, float | int | None] = {"count": int(arr.size), "mean": mean, "std": variance ** 0.5,
                                          "min": float(arr.min()), "max": float(arr.max())}
    pct = np.percentile(arr, PERCENTILES, overwrite_input=reorder or arr is not values)
    out.update({f"p{p}": float(v) for p, v in zip(PERCENTILES, pct)})
    out["max"] = out.pop("max")  # keep max last, after the percentiles
    return out
