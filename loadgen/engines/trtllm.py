"""TensorRT-LLM (trtllm-serve): answers HTTP 400 to any unknown field, so only fields it declares go
out; acceptance from its draining JSON iteration stats, and its Prometheus counters where enabled."""

from __future__ import annotations

from .base import SpecCounters
from .openai import OpenAIAdapter
from .prometheus_text import SpecMetricNames, spec_counters
from .server_metrics import CounterCollector, TrtllmIterationCollector

__all__ = ["TrtllmAdapter", "REQUEST_FIELDS"]

#: every field this adapter may send; TRT-LLM's CompletionRequest forbids extras
REQUEST_FIELDS = frozenset({"model", "prompt", "max_tokens", "temperature", "stream", "stream_options", "ignore_eos"})

NAMES = SpecMetricNames(draft_tokens="trtllm_spec_decode_num_draft_tokens_total",
                        accepted="trtllm_spec_decode_num_accepted_tokens_total",
                        accepted_per_position="trtllm_spec_decode_accepted_tokens_total",
                        drafted_per_position="trtllm_spec_decode_drafted_tokens_total",
                        position_label="token_position")


class TrtllmAdapter(OpenAIAdapter):
    name = "trtllm"
    token_counts = "usage"
    authoritative = ("server", "TRT-LLM's iteration stats count every verify step exactly (for all traffic); the "
                               "client's tokens per chunk equal them while stream_interval is 1")

    def request_body(self, *, model: str, prompt, max_tokens: int, temperature: float, ignore_eos: bool) -> dict:
        body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": temperature,
                "ignore_eos": ignore_eos, "stream": True,
                "stream_options": {"include_usage": True, "continuous_usage_stats": True}}
        assert body.keys() <= REQUEST_FIELDS
        return body

    def collectors(self) -> list:
        return [TrtllmIterationCollector(),
                CounterCollector("/prometheus/metrics", self.spec_counters, "trtllm /prometheus/metrics counters")]

    @staticmethod
    def spec_counters(metrics_text: str) -> SpecCounters | None:
        return spec_counters(metrics_text, NAMES)
