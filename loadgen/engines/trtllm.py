"""TensorRT-LLM (trtllm-serve): answers HTTP 400 to any unknown field, so only fields it declares go
out; acceptance from its draining JSON iteration stats, and its Prometheus counters where enabled."""

from __future__ import annotations

from pathlib import Path

from .base import SpecCounters, sizing_flags
from .openai import OpenAIAdapter
from .prometheus_text import SpecMetricNames, spec_counters
from .server_metrics import CounterCollector, TrtllmIterationCollector

__all__ = ["TrtllmAdapter", "REQUEST_FIELDS", "launch"]

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


#: recipe method -> speculative_config.decoding_type. EAGLE-3 is "Eagle" in 1.x (newer releases
#: also take "Eagle3" and keep "Eagle" as its alias); the PyTorch backend has no EAGLE-1/2.
DECODING_TYPES = {"eagle3": "Eagle", "mtp": "MTP", "ngram": "NGram", "draft_model": "DraftTarget"}
#: the options file `launch` writes (passed as --extra_llm_api_options)
OPTIONS_FILE = "extra_llm_api_options.yaml"


def llm_api_options(recipe) -> dict:
    """The LLM-API options YAML: iteration stats and Prometheus perf metrics on (what loadgen
    scrapes), one chunk per iteration, and the recipe's speculative config."""
    options: dict = {"enable_iter_perf_stats": True, "return_perf_metrics": True, "stream_interval": 1}
    if recipe.gpu_memory_fraction is not None:
        options["kv_cache_config"] = {"free_gpu_memory_fraction": recipe.gpu_memory_fraction}
    spec = recipe.speculative
    if spec.method != "none":
        _check_method(recipe)
        config: dict = {"decoding_type": DECODING_TYPES[spec.method], "max_draft_len": spec.num_speculative_tokens}
        if spec.method == "mtp":  # must equal max_draft_len
            config["num_nextn_predict_layers"] = spec.num_speculative_tokens
        if spec.draft_model:
            config["speculative_model_dir"] = spec.draft_model
        options["speculative_config"] = {**config, **spec.options}
        if spec.method in ("ngram", "draft_model"):
            options["disable_overlap_scheduler"] = True  # as TRT-LLM's docs run these methods
    return _merge(options, recipe.extra_config)


def _check_method(recipe) -> None:
    from ..errors import UsageError

    spec = recipe.speculative
    if spec.method not in DECODING_TYPES:
        raise UsageError(f"recipe {recipe.name}: TensorRT-LLM's PyTorch backend has no EAGLE-1/2 drafts; "
                         "use method eagle3 with an EAGLE-3 checkpoint")
    if spec.method == "ngram" and not spec.options.get("max_matching_ngram_size"):
        raise UsageError(f"recipe {recipe.name}: TensorRT-LLM's NGram needs speculative.options."
                         "max_matching_ngram_size (its default, 0, matches nothing), e.g. 4")


def _merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) \
            else value
    return merged


def launch(recipe, *, host: str, port: int, workdir: Path):
    """`trtllm-serve` (PyTorch backend) with its options YAML written to WORKDIR."""
    import yaml

    from ..servers.recipe import Launch

    options_path = workdir / OPTIONS_FILE
    argv = [recipe.executable or "trtllm-serve", recipe.model, "--backend", "pytorch", "--host", host,
            "--port", str(port), "--tp_size", str(recipe.tensor_parallel_size)]
    argv += sizing_flags(recipe, max_model_len="--max_seq_len", max_num_seqs="--max_batch_size")
    argv += ["--extra_llm_api_options", str(options_path)]
    text = yaml.safe_dump(llm_api_options(recipe), sort_keys=False)
    return Launch(tuple(argv), {}, {options_path: text})
