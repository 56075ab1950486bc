"""llama.cpp (llama-server): one SSE chunk per token even with speculation, so tokens per chunk
say nothing about acceptance; a step's tokens arrive as one burst, which the client groups by
network read and the gaps between them. The server's counters are the authoritative figure."""

from __future__ import annotations

from .base import SpecCounters
from .openai import OpenAIAdapter
from .prometheus_text import SpecMetricNames, spec_counters
from .server_metrics import CounterCollector

__all__ = ["LlamacppAdapter"]

NAMES = SpecMetricNames(drafts="llamacpp:spec_decode_num_drafts_total",
                        draft_tokens="llamacpp:spec_decode_num_draft_tokens_total",
                        accepted="llamacpp:spec_decode_num_accepted_tokens_total",
                        accepted_per_position="llamacpp:spec_decode_num_accepted_tokens_per_pos_total",
                        position_label="position")


class LlamacppAdapter(OpenAIAdapter):
    name = "llamacpp"
    token_counts = "one_per_token"
    #: chunks that arrive within this of a step's first chunk belong to that step. Measured against
    #: llama-server on 2 CPU cores: gaps inside a step's burst were < 0.8 ms for 96% of chunks, gaps
    #: between steps ~20 ms; an engine whose steps are shorter than this cannot be grouped.
    step_gap_ns = 2_000_000
    authoritative = ("server", "llama-server streams one chunk per token; the client can only group the chunks of "
                               "a step by the network read they arrived in, which a busy client or a split write "
                               "blurs, so its counters (--metrics) are the authoritative figure")

    def request_body(self, *, model: str, prompt, max_tokens: int, temperature: float, ignore_eos: bool) -> dict:
        return {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": temperature,
                "ignore_eos": ignore_eos, "stream": True, "stream_options": {"include_usage": True}}

    def collectors(self) -> list:
        return [CounterCollector("/metrics", self.spec_counters, "llama.cpp /metrics counters")]

    @staticmethod
    def spec_counters(metrics_text: str) -> SpecCounters | None:
        return spec_counters(metrics_text, NAMES)
