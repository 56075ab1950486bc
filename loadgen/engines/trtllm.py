"""TensorRT-LLM (trtllm-serve): answers HTTP 400 to any unknown field, so only fields it declares go
out; acceptance from its draining JSON iteration stats, and its Prometheus counters where enabled."""

from __future__ import annotations

from pathlib import Path

import orjson

from ..errors import UsageError
from .base import ChunkFields, EngineSpec, ScheduleSupport
from .launch import Launch, Recipe, sizing_flags
from .openai import OpenAIAdapter, decode_openai_object, load_chunk
from .prometheus_text import SPECULATIVE_NAME, SpecMetricNames
from .server_metrics import Getter, ServerAcceptance, SpecReading, fetch_text

__all__ = ["TrtllmAdapter", "TrtllmIterationCollector", "REQUEST_FIELDS", "launch", "schedule_snippet", "SCHEDULE",
           "SPEC"]

#: every field this adapter may send; TRT-LLM's CompletionRequest forbids extras
REQUEST_FIELDS = frozenset({"model", "prompt", "max_tokens", "temperature", "stream", "stream_options", "ignore_eos",
                            "detokenize"})

NAMES = SpecMetricNames(draft_tokens="trtllm_spec_decode_num_draft_tokens_total",
                        accepted="trtllm_spec_decode_num_accepted_tokens_total",
                        accepted_per_position="trtllm_spec_decode_accepted_tokens_total",
                        drafted_per_position="trtllm_spec_decode_drafted_tokens_total",
                        position_label="token_position", shape="TensorRT-LLM 1.3",
                        aside=("trtllm_spec_decode_acceptance_length", "trtllm_spec_decode_draft_overhead"))
#: the iteration stats' specDecodingStats keys a window's AL needs (executor/types.h SpecDecodingStats)
ITERATION_KEYS = ("numDraftTokens", "numAcceptedTokens", "numRequestsWithDraftTokens")
#: the same object's other keys, known and left aside (per-iteration figures the sums make exact)
ITERATION_ASIDE = ("acceptanceLength", "iterLatencyMS", "draftOverhead")
ITERATION_HINT = "start trtllm-serve with enable_iter_perf_stats: true"


def iteration_reading(body: str | None) -> SpecReading:
    """What one read of the JSON /metrics (iteration stats) gives: exact over the window where the
    entries' specDecodingStats have the keys it needs; "not read" where speculative keys come in
    another shape (a version that renamed them); absent where no entry speculates."""
    return _entries_reading(_iteration_entries(body))


def _entries_reading(entries: list[dict] | None) -> SpecReading:
    """iteration_reading of a body already parsed (the collector's drain parses each body once)."""
    if entries is None:
        return SpecReading("/metrics", "absent", f"no iteration stats ({ITERATION_HINT})")
    keys = {key for entry in entries for key in _speculative_keys(entry)}
    if keys and keys <= {f"specDecodingStats.{k}" for k in ITERATION_KEYS + ITERATION_ASIDE} and all(
            _spec_stats(entry) is not None for entry in entries if "specDecodingStats" in entry):
        return SpecReading("/metrics", "exact window", f"iteration stats ({len(entries)} iterations) count draft and "
                           "accepted tokens per iteration (no per-position counts)", tuple(sorted(keys)))
    if keys:
        return SpecReading("/metrics", "not read", "speculative iteration stats in a shape loadgen does not know",
                           (), tuple(sorted(keys)))
    what = "no iterations since the last read" if not entries else "no specDecodingStats (speculation off?)"
    return SpecReading("/metrics", "absent", what)


def _iteration_entries(body: str | None) -> list[dict] | None:
    try:
        entries = orjson.loads(body) if body is not None else None
    except orjson.JSONDecodeError:
        return None
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else None


def _speculative_keys(entry: dict) -> set[str]:
    """An iteration entry's keys that speak of speculation, nested ones as parent.key; a null value
    (specDecodingStats without speculation, seen at 1.0.0rc4) says nothing."""
    found = set()
    for key, value in entry.items():
        if value is None:
            continue
        if isinstance(value, dict):
            inner = {f"{key}.{k}" for k in value if SPECULATIVE_NAME.search(key) or SPECULATIVE_NAME.search(k)}
            found |= inner or ({key} if SPECULATIVE_NAME.search(key) else set())
        elif SPECULATIVE_NAME.search(key):
            found.add(key)
    return found


def _spec_stats(entry: dict) -> tuple[float, float, float] | None:
    """(requests with drafts, draft tokens, accepted tokens) of one iteration; None where its
    specDecodingStats lacks one of them (never read as zero)."""
    spec = entry.get("specDecodingStats")
    if not isinstance(spec, dict) or not all(isinstance(spec.get(k), (int, float)) for k in ITERATION_KEYS):
        return None
    return spec["numRequestsWithDraftTokens"], spec["numDraftTokens"], spec["numAcceptedTokens"]


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

    #: the Prometheus counters where return_perf_metrics is on; the JSON iteration stats, whose read
    #: drains them: the probe's, before a run, only takes what its collector would discard anyway
    speculative_paths: tuple[str, ...] = ("/prometheus/metrics", "/metrics")
    counter_shapes = (NAMES,)
    metrics_hint = "return_perf_metrics: true"

    def speculative_reading(self, path: str, body: str | None) -> SpecReading:
        return iteration_reading(body) if path == "/metrics" else super().speculative_reading(path, body)

    def collectors(self) -> list:
        return [TrtllmIterationCollector(), self.counter_collector("trtllm /prometheus/metrics counters")]


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
        self._not_read: set[str] = set()  # speculative keys of a shape loadgen does not know

    async def _drain(self, get: Getter) -> tuple[float, float, float] | None:
        body = await fetch_text(get, "/metrics")
        entries = _iteration_entries(body)
        if entries is None:
            self._readable = False
            return None
        reading = _entries_reading(entries)
        if reading.acceptance == "not read":
            self._not_read.update(reading.not_read)
        drafts = draft_tokens = accepted = 0.0
        for entry in entries:
            number = entry.get("iter")
            if isinstance(number, int):
                if self._last_iter is not None and number > self._last_iter + 1:
                    self._lost += number - self._last_iter - 1
                self._last_iter = number
            stats = _spec_stats(entry)
            if stats is not None:
                drafts += stats[0]
                draft_tokens += stats[1]
                accepted += stats[2]
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
        if self._not_read and not self._drafts:
            return ServerAcceptance(self.source, None, exact=False, reading="not read", not_read=sorted(self._not_read),
                                    note="/metrics iteration stats speak of speculation in keys loadgen does not "
                                         f"know ({', '.join(sorted(self._not_read))}): not read")
        if not self._readable and not self._drafts:
            return ServerAcceptance(self.source, None, exact=False, reading="absent",
                                    note=f"/metrics gave no iteration stats ({ITERATION_HINT})")
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
            raw={"iterations": self._iterations, "iterations_lost": self._lost}, reading="exact window",
            not_read=sorted(self._not_read))


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
