"""Reading Prometheus text exposition from an engine's /metrics."""

from __future__ import annotations

from collections import defaultdict

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["sample_sums"]


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
