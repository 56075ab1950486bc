"""Acceptance statistics from tokens per step, as the client saw them.

A step is a token-carrying chunk after the first: the first chunk is the prefill's single token,
so it says nothing about drafting. With one chunk per engine step (stream interval 1 and a
client that keeps up) tokens per step equal the step's acceptance length.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from loadgen.engines import SpecCounters

__all__ = ["step_histogram", "mean_from_histogram", "conditional_acceptance", "request_acceptance_length",
           "server_acceptance"]


def step_histogram(chunk_token_lists: Iterable[Sequence[int]]) -> dict[int, int]:
    """Steps per token count over all requests, first chunk of each excluded.

    [[1, 3, 2], [1, 3]] -> {3: 2, 2: 1}.
    """
    hist: Counter[int] = Counter()
    for tokens in chunk_token_lists:
        hist.update(tokens[1:])
    return dict(sorted(hist.items()))


def mean_from_histogram(hist: Mapping[int, int]) -> float | None:
    """Mean tokens per step: {3: 2, 2: 1} -> 8 / 3."""
    steps = sum(hist.values())
    return sum(k * n for k, n in hist.items()) / steps if steps else None


def conditional_acceptance(hist: Mapping[int, int]) -> dict[int, float]:
    """N(steps with >= k tokens) / N(steps with >= k-1 tokens) for k = 1 .. max.

    {1: 2, 2: 1, 3: 1} -> {1: 1.0, 2: 0.5, 3: 0.5}: k=1 is 1.0 by definition, and k is the
    chance that draft position k-1 was accepted given the earlier ones were.
    """
    if not hist:
        return {}
    top = max(hist)
    at_least = {k: sum(n for t, n in hist.items() if t >= k) for k in range(0, top + 1)}
    return {k: at_least[k] / at_least[k - 1] for k in range(1, top + 1) if at_least[k - 1]}


def request_acceptance_length(tokens: Sequence[int]) -> float | None:
    """One request's mean tokens per step: [1, 3, 4, 2] -> 3.0; None with no step after the first."""
    steps = tokens[1:]
    return sum(steps) / len(steps) if len(steps) else None


def server_acceptance(before: SpecCounters, after: SpecCounters) -> dict | None:
    """The engine's counters over the run: AL = 1 + accepted / drafts (the bonus token counts).

    The raw scrapes go into the result too, so anyone can redo the arithmetic.
    """
    delta = after.minus(before)
    if delta.drafts <= 0:
        return None
    return {
        "drafts": delta.drafts,
        "draft_tokens": delta.draft_tokens,
        "accepted_tokens": delta.accepted_tokens,
        "acceptance_length": 1.0 + delta.accepted_tokens / delta.drafts,
        "acceptance_rate": delta.accepted_tokens / delta.draft_tokens if delta.draft_tokens else None,
        "per_position": [n / delta.drafts for n in delta.accepted_per_position],
        "scrapes": {"before": before.to_json(), "after": after.to_json()},
    }
