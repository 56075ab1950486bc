"""TensorRT-LLM (trtllm-serve): answers HTTP 400 to any unknown field, so only fields it declares go
out; acceptance from its draining JSON iteration stats, and its Prometheus counters where enabled."""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from .base import ChunkFields, EngineSpec, Finding, ScheduleSupport, SpecCounters
from .launch import Launch, Recipe, sizing_flags
from .openai import OpenAIAdapter, decode_openai_object, load_chunk
from .prometheus_text import SpecMetricNames, spec_counters
from .server_metrics import (
    EXACT_SERVER_AL,
    SPECULATIVE_CHECK,
    CounterCollector,
    Getter,
    ServerAcceptance,
    counter_finding,
    fetch_json,
)

__all__ = ["TrtllmAdapter", "TrtllmIterationCollector", "REQUEST_FIELDS", "launch", "schedule_snippet", "SCHEDULE",
           "SPEC"]

#: every field this adapter may send; TRT-LLM's CompletionRequest forbids extras
REQUEST_FIELDS = frozenset({"model", "prompt", "max_tokens", "temperature", "stream", "stream_options", "ignore_eos",
                            "detokenize"})

NAMES = SpecMetricNames(draft_tokens="trtllm_spec_decode_num_draft_tokens_total",
                        accepted="trtllm_spec_decode_num_accepted_tokens_total",
                        accepted_per_position="trtllm_spec_decode_accepted_tokens_total",
                        drafted_per_position="trtllm_spec_decode_drafted_tokens_total",
                        position_label="token_position")


class TrtllmAdapter(OpenAIAdapter):
    name = "trtllm"
    token_counts = "usage"
    #: the same continuous usage on chat (NVIDIA/TensorRT-LLM tensorrt_llm/serve/postprocess_handlers.py
    #: chat_stream_post_processor: include_continuous_usage puts usage on the role chunk and every delta chunk)
    chat_token_counts = "usage"
    authoritative = ("server", "TRT-LLM's iteration stats count every verify step exactly (for all traffic); the "
                               "client's tokens per chunk equal them while stream_interval is 1")

    def request_body(self, *, model: str, prompt, max_tokens: int, temperature: float, ignore_eos: bool) -> dict:
        body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": temperature,
                "ignore_eos": ignore_eos, "stream": True,
                "stream_options": {"include_usage": True, "continuous_usage_stats": True}}
        assert body.keys() <= REQUEST_FIELDS
        return body

    #: on the stream, each choice's `avg_decoded_tokens_per_iter` (NVIDIA/TensorRT-LLM
    #: tensorrt_llm/serve/postprocess_handlers.py completion_stream_post_processor and
    #: chat_stream_post_processor: getattr(rsp, 'avg_decoded_tokens_per_iter', None), the executor
    #: Result's tokens per decoding iteration of this request, prefill included), so the request's
    #: iterations are its tokens / that. Draft and accepted counts per request are not on the stream:
    #: only GET /perf_metrics lists them (`speculative_decoding.total_draft_tokens`,
    #: `total_accepted_draft_tokens`, `acceptance_rate`; return_perf_metrics: true and
    #: perf_metrics_max_requests > 0; tensorrt_llm/metrics request_perf_metrics_to_dict), which loadgen does not poll
    per_request_figures = (True, "trtllm 1.2.1 choices[0].avg_decoded_tokens_per_iter on the closing chunk: the "
                                 "request's iterations = its tokens / that (always sent while speculating)")

    def decode(self, data: bytes) -> ChunkFields:
        """The OpenAI fields, plus the request's decode steps from the closing chunk's
        avg_decoded_tokens_per_iter (its iterations less the prefill's)."""
        obj = load_chunk(data)
        fields = decode_openai_object(obj)
        if fields.finish_reason is None or not fields.completion_tokens:
            return fields
        avg = obj["choices"][0].get("avg_decoded_tokens_per_iter")
        if not avg:
            return fields
        return fields._replace(server_steps=round(fields.completion_tokens / avg) - 1)

    version_endpoint: tuple[str, str] | None = ("/version", "version")
    own_endpoints: tuple[str, ...] = ("/health_generate", "/prometheus/metrics")
    metrics_path: str | None = "/prometheus/metrics"
    #: none: TRT-LLM's CompletionRequest has no cache_salt and no cache opt-out, and refuses fields it does
    #: not name (NVIDIA/TensorRT-LLM tensorrt_llm/serve/openai_protocol.py, CompletionRequest;
    #: OpenAIBaseModel's extra="forbid"), so --unique-prefix is its isolation
    cache_isolation_field: tuple[str, bool] | None = None
    #: detokenize false: each chunk's ids in choices[0].token_ids, and its text empty (the server skips
    #: detokenizing; NVIDIA/TensorRT-LLM tensorrt_llm/serve/postprocess_handlers.py
    #: completion_stream_post_processor, `text=delta_text if args.detokenize else ""`,
    #: `token_ids=None if args.detokenize else output.token_ids_diff`, at 01bf192). Completions only:
    #: ChatCompletionRequest has no detokenize and refuses fields it does not name
    output_ids_fields: dict | None = {"detokenize": False}
    output_ids_note = ("TRT-LLM: detokenize false on /v1/completions, choices[0].token_ids with empty text (the "
                       "server no longer detokenizes: its own work changes; postprocess_handlers.py "
                       "completion_stream_post_processor at 01bf192); none on chat")
    output_ids_drop_text = True

    async def speculative_metrics(self, get: Getter) -> Finding:
        """The Prometheus counters where return_perf_metrics is on; else the JSON iteration stats.
        Reading /metrics drains it: only before a run, whose collector drains it again anyway."""
        counters = await counter_finding(get, "/prometheus/metrics", self.spec_counters, "return_perf_metrics: true")
        if counters.consequence == EXACT_SERVER_AL:
            return counters
        entries = await fetch_json(get, "/metrics")
        if isinstance(entries, list) and any(isinstance(e, dict) and e.get("specDecodingStats") for e in entries):
            return Finding(SPECULATIVE_CHECK, "/metrics iteration stats count draft and accepted tokens (no "
                                              f"per-position counts; {counters.finding})", EXACT_SERVER_AL)
        return counters

    def collectors(self) -> list:
        return [TrtllmIterationCollector(),
                CounterCollector("/prometheus/metrics", self.spec_counters, "trtllm /prometheus/metrics counters")]

    @staticmethod
    def spec_counters(metrics_text: str) -> SpecCounters | None:
        return spec_counters(metrics_text, NAMES)


class TrtllmIterationCollector:
    """TRT-LLM's JSON /metrics drains on every read (two scrapers steal each other's iterations),
    so this one reads it for the whole run: the first read discards what came before, each poll
    adds its iterations' specDecodingStats, the last read closes the window.
    AL = (accepted + requests with drafts) / requests with drafts, summed over iterations."""

    source = "trtllm /metrics iteration stats"
    #: TRT-LLM keeps at most iter_stats_max_iterations (default 1000) between reads and drops the
    #: oldest: at 0.2 s, iterations would have to be shorter than 0.2 ms to be lost
    poll_interval_s = 0.2

    def __init__(self) -> None:
        self._drafts = self._draft_tokens = self._accepted = 0.0
        self._iterations = 0
        self._last_iter: int | None = None
        self._lost = 0  # iterations the engine dropped before they were read (gaps in "iter")
        self.series: list[dict] = []
        self._readable = True

    async def _drain(self, get: Getter) -> tuple[float, float, float] | None:
        entries = await fetch_json(get, "/metrics")
        if not isinstance(entries, list):
            self._readable = False
            return None
        drafts = draft_tokens = accepted = 0.0
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            number = entry.get("iter")
            if isinstance(number, int):
                if self._last_iter is not None and number > self._last_iter + 1:
                    self._lost += number - self._last_iter - 1
                self._last_iter = number
            spec = entry.get("specDecodingStats")
            if spec:
                drafts += spec.get("numRequestsWithDraftTokens", 0)
                draft_tokens += spec.get("numDraftTokens", 0)
                accepted += spec.get("numAcceptedTokens", 0)
        self._iterations += len(entries)
        return drafts, draft_tokens, accepted

    async def begin(self, get: Getter) -> None:
        await self._drain(get)  # iterations before the window are not ours
        self._iterations = self._lost = 0

    async def poll(self, get: Getter, t_s: float) -> None:
        got = await self._drain(get)
        if got is None:
            return
        drafts, draft_tokens, accepted = got
        self._drafts += drafts
        self._draft_tokens += draft_tokens
        self._accepted += accepted
        self.series.append({"t_s": round(t_s, 3), "acceptance_length": 1 + accepted / drafts if drafts else None,
                             "drafts": drafts})

    async def end(self, get: Getter) -> ServerAcceptance | None:
        await self.poll(get, float("nan"))
        if not self._readable and not self._drafts:
            return ServerAcceptance(self.source, None, exact=False,
                                    note="/metrics gave no iteration stats (start trtllm-serve with "
                                         "enable_iter_perf_stats: true)")
        if not self._drafts:
            return None
        note = "iteration stats carry no per-position acceptance; /prometheus/metrics does where enabled"
        if self._lost:
            note += (f"; {self._lost} of {self._iterations + self._lost} iterations were dropped by the engine before "
                     "they were read (its queue holds iter_stats_max_iterations): the counts miss them")
        return ServerAcceptance(
            self.source, 1.0 + self._accepted / self._drafts, drafts=self._drafts, draft_tokens=self._draft_tokens,
            accepted_tokens=self._accepted,
            acceptance_rate=self._accepted / self._draft_tokens if self._draft_tokens else None,
            exact=not self._lost, note=note, time_series=[s for s in self.series if s["t_s"] == s["t_s"]],
            raw={"iterations": self._iterations, "iterations_lost": self._lost})


#: recipe method -> speculative_config.decoding_type. EAGLE-3 is "Eagle" in 1.x (newer releases
#: also take "Eagle3" and keep "Eagle" as its alias); the PyTorch backend has no EAGLE-1/2.
DECODING_TYPES = {"eagle3": "Eagle", "mtp": "MTP", "ngram": "NGram", "draft_model": "DraftTarget"}
#: the options file `launch` writes (passed as --extra_llm_api_options)
OPTIONS_FILE = "extra_llm_api_options.yaml"


def llm_api_options(recipe: Recipe) -> dict:
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


def _check_method(recipe: Recipe) -> None:
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


def launch(recipe: Recipe, *, host: str, port: int, workdir: Path) -> Launch:
    """`trtllm-serve` (PyTorch backend) with its options YAML written to WORKDIR."""
    import yaml  # only `serve` and `matrix` render recipes; a run never needs PyYAML

    options_path = workdir / OPTIONS_FILE
    argv = [recipe.executable or "trtllm-serve", recipe.model, "--backend", "pytorch", "--host", host,
            "--port", str(port), "--tp_size", str(recipe.tensor_parallel_size)]
    argv += sizing_flags(recipe, max_model_len="--max_seq_len", max_num_seqs="--max_batch_size")
    argv += ["--extra_llm_api_options", str(options_path)]
    text = yaml.safe_dump(llm_api_options(recipe), sort_keys=False)
    return Launch(tuple(argv), {}, {options_path: text})


def schedule_snippet(schedule: dict) -> str | None:
    """Tune's schedule as far as TensorRT-LLM 1.2 takes it, as options YAML to merge over the
    recipe's (its extra_config): speculative_config.max_draft_len, the K of the lowest range where
    speculation pays, and max_concurrency, one below tune's off_from (TensorRT-LLM speculates while
    the requests it counts are at most max_concurrency). No max_concurrency where speculation never
    stops paying; None where it never pays."""
    import yaml  # only studies and recipes render this; a run never needs PyYAML

    paying = [r for r in schedule["ranges"] if r["draft_length"] > 0]
    if not paying:
        return None
    config = {"max_draft_len": paying[0]["draft_length"]}
    if schedule["off_from"] is not None:
        config["max_concurrency"] = schedule["off_from"] - 1
    return yaml.safe_dump({"speculative_config": config}, sort_keys=False)


SCHEDULE = ScheduleSupport(
    accepts="off_above",
    source="NVIDIA/TensorRT-LLM tensorrt_llm/_torch/speculative/drafter.py:54 (Drafter.should_use_spec_decode, "
           "main 83ab45a) and tensorrt_llm/llmapi/llm_args.py (DecodingBaseConfig.max_concurrency): in 1.0's release "
           "notes and on main, so at 1.2.1",
    note="Each iteration TensorRT-LLM speculates while min(active requests, max_batch_size, max_num_tokens // "
         "(1 + max_draft_len)) <= max_concurrency and not above it. Merge the YAML into the recipe's extra_config "
         "(deep-merged over the options file). The Drafter (two-model) path honours it: NGram, DraftTarget, "
         "Eagle with eagle3_one_model: false; for one-model Eagle3, the 1.x default the eagle3 recipes run, "
         "max_concurrency arrived with PR #10860 (main, March 2026): unverified at 1.2.1. 1.2's draft_len_schedule "
         "(batch size -> K, a 'developer interface') is not rendered: there (stage 1, PR #8194) it shortens only "
         "the two-model drafters' drafts while the target verifies the padded length, and PR #10860 changed what its "
         "keys mean.",
    snippet=schedule_snippet)

SPEC = EngineSpec(name="trtllm", adapter=TrtllmAdapter, owned_by=("tensorrt_llm",), default_port=8000, launch=launch,
                  personality="loadgen.emulator.trtllm:Trtllm", schedule_support=SCHEDULE)
