"""SGLang: continuous usage stats without include_usage; acceptance only as windowed gauges and a
cumulative average (no counters), so the client's per-chunk counts are the better window figure."""

from __future__ import annotations

from .openai import OpenAIAdapter
from .server_metrics import SglangCollector

__all__ = ["SglangAdapter"]


class SglangAdapter(OpenAIAdapter):
    name = "sglang"
    token_counts = "usage"
    authoritative = ("client", "SGLang exports only windowed gauges and a since-start average, so the client's "
                               "tokens per chunk (stream interval 1: one chunk per verify step) are the exact window "
                               "figure")

    def request_body(self, *, model: str, prompt, max_tokens: int, temperature: float, ignore_eos: bool) -> dict:
        return {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": temperature,
                "ignore_eos": ignore_eos, "stream": True,
                "stream_options": {"include_usage": True, "continuous_usage_stats": True}}

    def collectors(self) -> list:
        return [SglangCollector()]
