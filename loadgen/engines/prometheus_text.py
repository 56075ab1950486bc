"""Reading Prometheus text exposition from an engine's /metrics."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from .base import SpecCounters

__all__ = ["Scrape", "speculative_names", "SpecMetricNames", "spec_counters", "first_counters"]

#: a metric whose name speaks of speculative decoding (drafts, acceptance): one loadgen does not
#: know is reported as not read, never passed over (a renamed counter must not read as zero)
SPECULATIVE_NAME = re.compile(r"spec|draft|accept", re.IGNORECASE)


class Scrape:
    """One Prometheus exposition parsed once: every reading of the body (its names, sums, values,
    labels) comes from the same samples. A vLLM scrape of ~56 KB takes ~7 ms to parse, and a
    collector reads one every second beside the run's streams. ValueError where the text is no
    Prometheus exposition."""

    __slots__ = ("samples",)

    def __init__(self, text: str) -> None:
        self.samples = [sample for family in text_string_to_metric_families(text) for sample in family.samples]

    def names(self) -> set[str]:
        """Every sample name (a counter's `_total`, a histogram's `_bucket`…)."""
        return {sample.name for sample in self.samples}

    def sums(self, names: set[str], by_label: str | None = None) -> dict[str, dict[str, float]]:
        """Each wanted sample summed over all its label sets (engines, ranks, models), keyed by one label.

        {"vllm:x_total": {"": 12.0}} without by_label; {"…per_pos_total": {"0": 5.0, "1": 3.0}} with it.
        """
        out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for sample in self.samples:
            if sample.name in names:
                key = sample.labels.get(by_label, "") if by_label else ""
                out[sample.name][key] += sample.value
        return out

    def values(self, names: set[str]) -> dict[str, list[float]]:
        """Every sample of each wanted name, one per label set (a gauge per scheduler, rank or model);
        a name without samples is left out."""
        out: dict[str, list[float]] = defaultdict(list)
        for sample in self.samples:
            if sample.name in names:
                out[sample.name].append(sample.value)
        return out

    def label_value(self, name: str, label: str) -> str | None:
        """The value of LABEL on the first sample of NAME (an info gauge such as vLLM's
        cache_config_info), or None where there is none."""
        return next((sample.labels[label] for sample in self.samples
                     if sample.name == name and label in sample.labels), None)


def speculative_names(names: set[str]) -> set[str]:
    """Of a scrape's sample names (Scrape.names), those that speak of speculative decoding
    (SPECULATIVE_NAME), less the `_created` timestamps prometheus_client exports beside each counter
    (vLLM's, as separate gauges)."""
    return {name for name in names if SPECULATIVE_NAME.search(name) and not name.endswith("_created")}


@dataclass(frozen=True)
class SpecMetricNames:
    """An engine's spec-decode counter names at some versions (`shape`, in words). `drafts` None:
    count drafts as the draft tokens proposed at position 0 (every draft has one), as TRT-LLM's
    counters require. `aside`: the same versions' other speculative names, known and left unread
    (gauges that these counters make exact)."""

    draft_tokens: str
    accepted: str
    accepted_per_position: str
    position_label: str
    drafts: str | None = None
    drafted_per_position: str | None = None
    shape: str = ""
    aside: tuple[str, ...] = ()

    def required(self) -> set[str]:
        """The names without which no acceptance length can be read."""
        return {self.draft_tokens, self.accepted, self.drafts or self.drafted_per_position or ""} - {""}

    def known(self) -> set[str]:
        return self.required() | {self.accepted_per_position, *self.aside} | (
            {self.drafted_per_position} if self.drafted_per_position else set())


def spec_counters(scrape: Scrape, names: SpecMetricNames) -> SpecCounters | None:
    """The cumulative counters at one scrape, summed over label sets; None unless every name it
    needs is there (a missing one is never read as zero)."""
    wanted = {names.draft_tokens, names.accepted} | ({names.drafts} if names.drafts else set())
    sums = scrape.sums(wanted)
    if not wanted <= sums.keys():
        return None
    per_name = {names.accepted_per_position} | ({names.drafted_per_position} if names.drafted_per_position else set())
    per_pos = scrape.sums(per_name, by_label=names.position_label)
    if names.drafts is not None:
        drafts = sums[names.drafts][""]
    else:
        drafted = per_pos.get(names.drafted_per_position, {}) if names.drafted_per_position is not None else {}
        if "0" not in drafted:
            return None
        drafts = drafted["0"]
    accepted = per_pos.get(names.accepted_per_position, {})
    positions = tuple(accepted[k] for k in sorted(accepted, key=int))
    return SpecCounters(drafts, sums[names.draft_tokens][""], sums[names.accepted][""], positions)


def first_counters(scrape: Scrape, shapes: Sequence[SpecMetricNames]) -> tuple[SpecMetricNames, SpecCounters] | None:
    """The first of an engine's known shapes (its versions' names) whose counters the scrape has."""
    for shape in shapes:
        counters = spec_counters(scrape, shape)
        if counters is not None:
            return shape, counters
    return None
