"""Which prompts a run sends, in what order: every prompt once per pass, stratified by category, seeded.

The rules (README "Which prompts are sent"):

- One PASS holds every prompt of the workload exactly once. Each category is shuffled with the
  seed, and the categories are interleaved in proportion to their sizes: the j-th of a category of
  n prompts sits at (j + 0.5) / n of the pass (ties by category name), so any stretch of the pass
  holds each category in about its share, whatever the dataset's lopsidedness.
- A run that sends N requests takes N // size whole passes (all in the same order), then a
  partial pass of N % size prompts: each category gets its share of those by largest-remainder
  rounding (N % size × its size / the workload's size, rounded down, the rest given one each to
  the largest remainders, ties by category name), the first prompts of its shuffled order, sent in
  the pass's order. So no prompt is sent twice before every prompt was sent once.
- Without -n (nor --duration) a run sends one pass: every prompt exactly once. A duration-bound or
  stepped run cycles the pass, which is the same endless sequence of passes.

{a: 8 prompts, b: 2 prompts} with N 5 -> a gets 4, b 1; with N 15 -> one pass of 10, then a 4, b 1.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

from .prompt import Prompt

__all__ = ["stratified_order", "category_quotas"]


def category_quotas(sizes: dict[str, int], count: int) -> dict[str, int]:
    """`count` prompts shared among categories of these sizes in proportion, largest remainder:
    {"a": 80, "b": 10} and 45 -> {"a": 40, "b": 5}; never more than a category holds."""
    total = sum(sizes.values())
    exact = {name: count * size / total for name, size in sizes.items()}
    quotas = {name: int(share) for name, share in exact.items()}
    left = count - sum(quotas.values())
    for name in sorted(exact, key=lambda n: (-(exact[n] - quotas[n]), n))[:left]:
        quotas[name] += 1
    return quotas


def stratified_order(prompts: Sequence[Prompt], count: int | None, seed: int) -> list[Prompt]:
    """The first `count` prompts of the run's endless sequence of passes (None: one pass), as the
    module's docstring says. The same prompts and seed always give the same list."""
    groups: dict[str, list[Prompt]] = defaultdict(list)
    for p in prompts:
        groups[p.category].append(p)
    rng = random.Random(seed)
    for name in sorted(groups):
        rng.shuffle(groups[name])
    size = len(prompts)
    count = size if count is None else count
    passes, rest = divmod(count, size)
    quotas = category_quotas({name: len(group) for name, group in groups.items()}, rest)

    def pass_of(take: dict[str, int]) -> list[Prompt]:
        placed = [((j + 0.5) / len(group), name, group[j]) for name, group in groups.items()
                  for j in range(take[name])]
        return [p for *_, p in sorted(placed, key=lambda item: item[:2])]

    whole = pass_of({name: len(group) for name, group in groups.items()}) if passes else []
    return whole * passes + pass_of(quotas)
