"""SGLang: continuous usage stats without include_usage; acceptance only as windowed gauges and a
cumulative average (no counters), so the client's per-chunk counts are the better window figure."""

from __future__ import annotations

from pathlib import Path

from .base import option_flags, sizing_flags
from .openai import OpenAIAdapter
from .server_metrics import SglangCollector

__all__ = ["SglangAdapter", "launch"]


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


#: recipe method -> --speculative-algorithm
ALGORITHMS = {"eagle": "EAGLE", "eagle3": "EAGLE3", "mtp": "NEXTN", "draft_model": "STANDALONE", "ngram": "NGRAM"}


def launch(recipe, *, host: str, port: int, workdir: Path):
    """`python -m sglang.launch_server` with metrics on and one chunk per verify step. Draft-tree
    methods run a chain (top-k 1): n steps draft n tokens, verified as n + 1."""
    from ..servers.recipe import Launch

    argv = [recipe.executable or "python3", "-m", "sglang.launch_server", "--model-path", recipe.model,
            "--host", host, "--port", str(port), "--tp-size", str(recipe.tensor_parallel_size),
            "--enable-metrics", "--stream-interval", "1"]
    argv += sizing_flags(recipe, gpu_memory_fraction="--mem-fraction-static", max_model_len="--context-length",
                         max_num_seqs="--max-running-requests")
    spec = recipe.speculative
    if spec.method != "none":
        n = spec.num_speculative_tokens
        argv += ["--speculative-algorithm", ALGORITHMS[spec.method]]
        if spec.draft_model:
            argv += ["--speculative-draft-model-path", spec.draft_model]
        if spec.method == "ngram":
            argv += ["--speculative-num-draft-tokens", str(n + 1)]
        else:
            argv += ["--speculative-num-steps", str(n), "--speculative-eagle-topk", "1",
                     "--speculative-num-draft-tokens", str(n + 1)]
        argv += option_flags(spec.options)
    return Launch(tuple(argv), {}, {})
