"""Reading Prometheus text exposition from an engine's /metrics."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from .base import SpecCounters

__all__ = ["sample_sums", "label_value", "SpecMetricNames", "spec_counters"]


def sample_sums(text: str, names: set[str], by_label: str | None = None) -> dict[str, dict[str, float]]:
    """Sum each wanted sample over all its label sets (engines, ranks, models), keyed by one label.

    {"vllm:x_total": {"": 12.0}} without by_label; {"…per_pos_total": {"0": 5.0, "1": 3.0}} with it.
    """
    out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in names:
                key = sample.labels.get(by_label, "") if by_label else ""
                out[sample.name][key] += sample.value
    return out


def label_value(text: str, name: str, label: str) -> str | None:
    """The value of LABEL on the first sample of NAME (an info gauge such as vLLM's
    cache_config_info), or None where there is none."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and label in sample.labels:
                return sample.labels[label]
    return None


@dataclass(frozen=True)
class SpecMetricNames:
    """An engine's spec-decode counter names. `drafts` None: count drafts as the draft tokens
    proposed at position 0 (every draft has one), as TRT-LLM's counters require."""

    draft_tokens: str
    accepted: str
    accepted_per_position: str
    position_label: str
    drafts: str | None = None
    drafted_per_position: str | None = None


def spec_counters(text: str, names: SpecMetricNames) -> SpecCounters | None:
    """The cumulative counters at one scrape, summed over label sets; None if the engine has none."""
    wanted = {names.draft_tokens, names.accepted} | ({names.drafts} if names.drafts else set())
    sums = sample_sums(text, wanted)
    per_name = {names.accepted_per_position} | ({names.drafted_per_position} if names.drafted_per_position else set())
    per_pos = sample_sums(text, per_name, by_label=names.position_label)
    if names.drafts is not None:
        if names.drafts not in sums:
            return None
        drafts = sums[names.drafts][""]
    else:
        drafted = per_pos.get(names.drafted_per_position, {}) if names.drafted_per_position is not None else {}
        if "0" not in drafted:
            return None
        drafts = drafted["0"]
    accepted = per_pos.get(names.accepted_per_position, {})
    positions = tuple(accepted[k] for k in sorted(accepted, key=int))
    return SpecCounters(drafts, sums[names.draft_tokens][""], sums[names.accepted][""], positions)
