"""Which prompts a run sends, in what order: round-robin across categories, seeded."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

from .prompt import Prompt

__all__ = ["round_robin"]


def round_robin(prompts: Sequence[Prompt], count: int | None, seed: int) -> list[Prompt]:
    """Each category shuffled with `seed`, then one from each category in turn (categories in name
    order), wrapping around a category that runs out. count=None gives one pass over every prompt.

    {a: [a1, a2, a3], b: [b1]} with count 5 -> a?, b1, a?, b1, a? : every category gets its share
    even when the dataset is lopsided, and the same seed always gives the same list.
    """
    groups: dict[str, list[Prompt]] = defaultdict(list)
    for p in prompts:
        groups[p.category].append(p)
    rng = random.Random(seed)
    order = []
    for name in sorted(groups):
        group = groups[name][:]
        rng.shuffle(group)
        order.append(group)
    total = len(prompts) if count is None else count
    if count is None:
        # one pass: interleave until every prompt was used once
        out: list[Prompt] = []
        depth = 0
        while len(out) < total:
            out.extend(group[depth] for group in order if depth < len(group))
            depth += 1
        return out
    return [order[i % len(order)][(i // len(order)) % len(order[i % len(order)])] for i in range(total)]
