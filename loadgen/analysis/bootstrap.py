"""Percentile-bootstrap 95 % intervals, seeded and vectorised (every resample drawn at once).

Two designs share the percentile step: two independent samples, each resampled on its own (tune's
runs, whose requests have no partner in the other run), and paired samples, where the same
resampled indices pick from every array (compare's prompts: a prompt sent in both runs is one
unit, so what the prompts themselves vary by cancels out of the difference).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["BOOTSTRAP_SAMPLES", "Interval", "paired_interval", "ratio_of_means_interval"]

#: resamples per interval (seeded: the same runs give the same intervals)
BOOTSTRAP_SAMPLES = 2000


@dataclass(frozen=True, slots=True)
class Interval:
    """A statistic and its 95 % percentile-bootstrap interval."""

    value: float
    low: float
    high: float

    def contains(self, null: float) -> bool:
        """Whether `null` (1 for a ratio, 0 for a difference) lies inside: the effect is within noise."""
        return self.low <= null <= self.high

    def to_json(self, null: float) -> dict:
        return {"value": self.value, "low": self.low, "high": self.high, "within_noise": self.contains(null)}


def _percentiles(value: float, resampled: np.ndarray) -> Interval:
    low, high = np.nanpercentile(resampled, [2.5, 97.5])
    return Interval(float(value), float(low), float(high))


def ratio_of_means_interval(base: np.ndarray, other: np.ndarray, rng: np.random.Generator,
                            samples: int = BOOTSTRAP_SAMPLES) -> Interval:
    """mean(base) / mean(other), each sample resampled independently (unpaired)."""
    b = base[rng.integers(0, base.size, size=(samples, base.size))].mean(axis=1)
    o = other[rng.integers(0, other.size, size=(samples, other.size))].mean(axis=1)
    return _percentiles(float(np.mean(base) / np.mean(other)), b / o)


def paired_interval(statistic: Callable[..., np.ndarray | float], arrays: tuple[np.ndarray, ...],
                    rng: np.random.Generator, samples: int = BOOTSTRAP_SAMPLES) -> Interval:
    """`statistic(*arrays)` and its paired interval: the arrays are aligned (item i of each is the
    same unit), and each resample draws one set of unit indices for all of them. `statistic`
    reduces along the last axis (it gets 1-D arrays for the estimate, (samples, n) for the resamples)."""
    n = arrays[0].size
    picks = rng.integers(0, n, size=(samples, n))
    with np.errstate(divide="ignore", invalid="ignore"):
        return _percentiles(float(statistic(*arrays)), np.asarray(statistic(*(a[picks] for a in arrays))))
