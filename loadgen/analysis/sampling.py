"""Which prompts the measured window sent, and how often: the report's sampling section.

The one count of "how many times each prompt was sent" (measured first turns by prompt id), which
the prefix-cache figures read too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from ..records import RequestRecord
from .report_types import SamplingFigures

__all__ = ["prompt_send_counts", "sampling_figures", "sampling_line"]


def prompt_send_counts(records: Sequence[RequestRecord]) -> Counter[str]:
    """{prompt id: measured first turns sent with it}; warm-up requests, later turns and records
    without a prompt id are not counted."""
    return Counter(r.prompt_id for r in records if not r.warmup and r.turn == 0 and r.prompt_id)


def sampling_figures(records: Sequence[RequestRecord], workload_prompts: int) -> SamplingFigures:
    """The measured window's draw from a workload of `workload_prompts` prompts."""
    counts = prompt_send_counts(records)
    by_category = Counter(r.category for r in records if not r.warmup and r.turn == 0 and r.prompt_id)
    return SamplingFigures(workload_prompts=workload_prompts, requests=sum(counts.values()),
                           distinct_prompts=len(counts), requests_by_category=dict(sorted(by_category.items())),
                           prompts_sent_more_than_once=sum(1 for n in counts.values() if n > 1),
                           most_sends_of_one_prompt=max(counts.values(), default=0))


def sampling_line(figures: SamplingFigures) -> str:
    """The console's one line: "sampling: 480 requests, 480 of 880 prompts, none sent twice"."""
    repeats = ("none sent twice" if not figures.prompts_sent_more_than_once else
               f"{figures.prompts_sent_more_than_once} sent more than once (at most "
               f"{figures.most_sends_of_one_prompt}×)")
    return (f"sampling: {figures.requests} requests, {figures.distinct_prompts} of {figures.workload_prompts} "
            f"prompts, {repeats}; by category " +
            ", ".join(f"{name} {n}" for name, n in figures.requests_by_category.items()))
