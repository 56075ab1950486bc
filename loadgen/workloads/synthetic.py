"""Deterministic synthetic prompts: seeded token ids of a fixed length.

Random ids are a contrast, not a benchmark of speculative decoding: drafters accept very
differently on real text. The real-text workloads arrive with the workloads issue.
"""

from __future__ import annotations

import random

from .prompt import Prompt

__all__ = ["synthetic_prompts"]

_LOW_ID, _HIGH_ID = 1000, 30000  # clear of special tokens in common vocabularies


def synthetic_prompts(count: int, input_len: int, seed: int = 0) -> list[Prompt]:
    rng = random.Random(seed)
    return [Prompt(f"synthetic-{i}", tuple(rng.randrange(_LOW_ID, _HIGH_ID) for _ in range(input_len)), "synthetic")
            for i in range(count)]
