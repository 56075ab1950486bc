"""vLLM: continuous usage stats give exact per-chunk token counts; spec-decode counters on /metrics."""

from __future__ import annotations

from .base import SpecCounters
from .openai import OpenAIAdapter
from .prometheus_text import sample_sums

__all__ = ["VllmAdapter"]

_DRAFTS = "vllm:spec_decode_num_drafts_total"
_DRAFT_TOKENS = "vllm:spec_decode_num_draft_tokens_total"
_ACCEPTED = "vllm:spec_decode_num_accepted_tokens_total"
_PER_POS = "vllm:spec_decode_num_accepted_tokens_per_pos_total"


class VllmAdapter(OpenAIAdapter):
    name = "vllm"
    token_counts = "usage"
    metrics_path = "/metrics"

    def request_body(self, *, model: str, prompt: list[int], max_tokens: int, temperature: float,
                     ignore_eos: bool) -> dict:
        # continuous_usage_stats needs include_usage too; it puts the cumulative completion_tokens
        # on every chunk, so tokens per chunk come from the engine, never from text.
        return {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": temperature,
                "ignore_eos": ignore_eos, "stream": True,
                "stream_options": {"include_usage": True, "continuous_usage_stats": True}}

    def spec_counters(self, metrics_text: str) -> SpecCounters | None:
        sums = sample_sums(metrics_text, {_DRAFTS, _DRAFT_TOKENS, _ACCEPTED})
        if _DRAFTS not in sums:
            return None
        per_pos = sample_sums(metrics_text, {_PER_POS}, by_label="position").get(_PER_POS, {})
        positions = tuple(per_pos[k] for k in sorted(per_pos, key=int))
        return SpecCounters(sums[_DRAFTS][""], sums[_DRAFT_TOKENS][""], sums[_ACCEPTED][""], positions)
