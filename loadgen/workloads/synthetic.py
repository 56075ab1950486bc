"""Random token ids: the contrast, not a benchmark of speculative decoding.

Drafters accept very differently on real text (SPEED-Bench found random inputs overstate SD
throughput by ~23%), so this exists to show that gap, with seeded, reproducible ids.
"""

from __future__ import annotations

import numpy as np

from .prompt import Prompt

__all__ = ["random_ids", "random_prompts"]

_LOW_ID, _HIGH_ID = 1000, 30000  # clear of special tokens in common vocabularies


def random_ids(size: int, seed: int = 0) -> np.ndarray:
    """`size` seeded random ids, the same for the same seed."""
    return np.random.default_rng(seed).integers(_LOW_ID, _HIGH_ID, size=size, dtype=np.int32)


def random_prompts(count: int, input_len: int, seed: int = 0) -> list[Prompt]:
    ids = random_ids(count * input_len, seed).reshape(count, input_len)
    return [Prompt(f"random-{i}", ids[i], "random") for i in range(count)]
