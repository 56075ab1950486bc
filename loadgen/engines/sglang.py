"""SGLang: continuous usage stats without include_usage; acceptance up to 0.5.9 only as windowed
gauges and a cumulative average (no counters), so the client's per-chunk counts are the better
window figure; after it, verify-call counters per finished request, read exactly where present."""

from __future__ import annotations

import re
from pathlib import Path

import orjson

from .base import EngineSpec, Finding, ScheduleSupport, SpecCounters
from .launch import Launch, Recipe, option_flags, sizing_flags
from .openai import OpenAIAdapter
from .prefix_cache import PrefixCacheReading
from .prometheus_text import Scrape, speculative_names
from .server_metrics import (
    NOT_PROMETHEUS,
    CounterCollector,
    Getter,
    ServerAcceptance,
    SpecReading,
    fetch_text,
    readings_finding,
)

__all__ = ["SglangAdapter", "SglangCollector", "launch", "SCHEDULE", "SPEC"]

CACHE_HIT_RATE = "sglang:cache_hit_rate"
ACCEPT_LENGTH, ACCEPT_RATE = "sglang:spec_accept_length", "sglang:spec_accept_rate"
#: the scheduler's gauges over recent decode batches (python/sglang/srt/metrics/collector.py,
#: SchedulerMetricsCollector), the speculative names loadgen reads on /metrics
GAUGES = (ACCEPT_LENGTH, ACCEPT_RATE)
#: versions after 0.5.9 (PR #25689, merged 2026-05-18) count verify calls: the tokenizer's
#: TokenizerMetricsCollector.observe_one_finished_request adds, once per finished request, its
#: spec_verify_ct (verify forwards; the prefill is none), its completion tokens (the prefill's token
#: included) and 1 request (python/sglang/srt/observability/metrics_collector.py at 016d8605;
#: tokenizer_manager.py collect_metrics; scheduler _resolve_spec_v2_tokens `req.spec_verify_ct += 1`)
VERIFY_CALLS = "sglang:spec_verify_calls_total"
GENERATION_TOKENS, REQUESTS = "sglang:generation_tokens_total", "sglang:num_requests_total"
#: the draft configuration in force (PR #25940: "Currently active speculative_num_steps"), no figure
CONFIG_GAUGES = ("sglang:spec_num_steps", "sglang:spec_num_draft_tokens")
#: every speculative name on /metrics loadgen knows, read or left aside
KNOWN_NAMES = {*GAUGES, VERIFY_CALLS, *CONFIG_GAUGES}
#: /server_info's cumulative average since the server started: top level in older versions, per
#: scheduler under internal_states in newer ones
AVERAGE_KEY = "avg_spec_accept_length"
#: /server_info, and the name older versions serve it under (deprecated since, still answered)
SERVER_INFO_PATHS = ("/server_info", "/get_server_info")
METRICS_HINT = "start SGLang with --enable-metrics"


class SglangAdapter(OpenAIAdapter):
    name = "sglang"
    token_counts = "usage"
    #: the same continuous usage on chat (sgl-project/sglang python/sglang/srt/entrypoints/openai/serving_chat.py
    #: _generate_stream_content: usage on every reasoning and content chunk when continuous_usage_stats)
    chat_token_counts = "usage"
    authoritative = ("client", "SGLang up to 0.5.9 exports only windowed gauges and a since-start average, so the "
                               "client's tokens per chunk (stream interval 1: one chunk per verify step) are the exact "
                               "window figure; later versions' verify-call counters count only finished requests")

    def request_body(self, *, model: str, prompt, max_tokens: int, temperature: float, ignore_eos: bool) -> dict:
        return {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": temperature,
                "ignore_eos": ignore_eos, "stream": True,
                "stream_options": {"include_usage": True, "continuous_usage_stats": True}}

    #: none on /v1/completions: the stream's chunks are built from meta_info's counts and text only,
    #: and its speculative counts (spec_verify_ct, spec_accept_token_num, spec_draft_token_num) reach
    #: a client only on the native /generate (sgl-project/sglang
    #: python/sglang/srt/entrypoints/openai/serving_completions.py _generate_completion_stream,
    #: read at 004c82e, after 0.5.9; tokenizer_manager meta_info for /generate)
    per_request_figures = (False, "not given by sglang 0.5.9 on /v1/completions (spec_verify_ct is in meta_info of "
                                  "the native /generate only)")
    #: /server_info is server_args + scheduler info, with the version among them
    version_endpoint: tuple[str, str] | None = ("/server_info", "version")
    own_endpoints: tuple[str, ...] = ("/health_generate", "/server_info", "/get_model_info")
    metrics_path: str | None = "/metrics"
    #: the radix cache is on unless --disable-radix-cache; its hit rate is a gauge
    prefix_cache_metrics: tuple[str, ...] = ("sglang:cache_hit_rate",)
    #: CompletionRequest.cache_salt is passed on to the cache (sgl-project/sglang
    #: python/sglang/srt/entrypoints/openai/serving_completions.py, _convert_to_internal_request)
    cache_isolation_field: tuple[str, bool] | None = ("cache_salt", True)
    #: --enable-cache-report gives prompt_tokens_details only where cached_tokens > 0 (sgl-project/sglang
    #: python/sglang/srt/entrypoints/openai/usage_processor.py, UsageProcessor._details_if_cached)
    cached_tokens_zero_omitted = True
    #: return_token_ids puts each chunk's new ids in choices[0].token_ids on /v1/completions
    #: (sgl-project/sglang python/sglang/srt/entrypoints/openai/serving_completions.py
    #: _generate_completion_stream, at main 004c82e; not checked at the recipes' 0.5.9). Chat: not verified
    output_ids_fields: dict | None = {"return_token_ids": True}
    output_ids_note = ("SGLang: return_token_ids, choices[0].token_ids on /v1/completions chunks "
                       "(serving_completions.py _generate_completion_stream at main 004c82e; unverified at the 0.5.9 "
                       "pin; chat: none verified)")

    def collectors(self) -> list:
        """The verify-call counters where the version has them (exact), and the gauges with the
        server info's averages (the only figures up to 0.5.9)."""
        return [CounterCollector("/metrics", counter_reading, "sglang /metrics counters (per finished request)"),
                SglangCollector()]

    def prefix_cache_reading(self, metrics_text: str) -> PrefixCacheReading | None:
        """sglang:cache_hit_rate, a gauge of the recent prefill batches' hit rate (no counters), the
        mean over its ranks; SGLang's own count per request is usage cached_tokens (--enable-cache-report)."""
        rates = Scrape(metrics_text).sums({CACHE_HIT_RATE}, by_label="tp_rank").get(CACHE_HIT_RATE)
        return PrefixCacheReading(hit_rate=sum(rates.values()) / len(rates)) if rates else None

    #: gauges (recent decode batches) and a since-start average, never counters
    speculative_paths: tuple[str, ...] = ("/metrics", "/server_info")

    def speculative_reading(self, path: str, body: str | None) -> SpecReading:
        return server_info_reading(body, path) if path in SERVER_INFO_PATHS else metrics_reading(body)

    async def speculative_metrics(self, get: Getter) -> Finding:
        """/metrics' gauges, and the server info under whichever name the version answers."""
        path, info = await fetch_server_info(get)
        return readings_finding([metrics_reading(await fetch_text(get, "/metrics")), server_info_reading(info, path)])


def counter_reading(body: str | None) -> tuple[SpecReading, SpecCounters | None]:
    """/metrics with the verify-call counters: exact over the requests finished in the window, as
    counters whose "drafts" are the verify calls and "accepted" the decode tokens beyond one per
    call (completion tokens less each request's prefill token, less the calls), so the window's AL
    1 + accepted / drafts = (Δgeneration − Δrequests) / Δverify calls: tokens per verify step,
    pooled over those requests. Without them, the gauge reading (and no counters)."""
    reading, scrape = _scrape_reading(body)
    if scrape is None or reading.acceptance != "exact window":
        return reading, None
    sums = {name: values[""] for name, values in scrape.sums({VERIFY_CALLS, GENERATION_TOKENS, REQUESTS}).items()}
    calls = sums[VERIFY_CALLS]
    return reading, SpecCounters(calls, 0.0, sums[GENERATION_TOKENS] - sums[REQUESTS] - calls, ())


def metrics_reading(body: str | None) -> SpecReading:
    """/metrics: the verify-call counters where the version has them (exact window), else the
    windowed gauge sglang:spec_accept_length; other speculative names not read (a version that
    renamed them)."""
    return _scrape_reading(body)[0]


def _scrape_reading(body: str | None) -> tuple[SpecReading, Scrape | None]:
    """metrics_reading, and the body parsed (None where it is not Prometheus text), for a collector
    to take its figures from without parsing it again."""
    if body is None:
        return SpecReading("/metrics", "absent", f"does not answer ({METRICS_HINT})"), None
    try:
        scrape = Scrape(body)
    except ValueError:
        return SpecReading("/metrics", "not read", NOT_PROMETHEUS), None
    return _names_reading(scrape.names()), scrape


def _names_reading(names: set[str]) -> SpecReading:
    """What a scrape with these sample names gives (metrics_reading)."""
    present = speculative_names(names)
    unknown = tuple(sorted(present - KNOWN_NAMES))
    if VERIFY_CALLS in present and {GENERATION_TOKENS, REQUESTS} <= names:
        return SpecReading("/metrics", "exact window", "counters sglang:spec_verify_calls_total, "
                           "generation_tokens_total, num_requests_total (per finished request)",
                           tuple(sorted(present & {VERIFY_CALLS, *GAUGES})), unknown)
    if ACCEPT_LENGTH in present:
        return SpecReading("/metrics", "windowed gauge", "gauge sglang:spec_accept_length (recent decode batches)",
                           tuple(sorted(present & set(GAUGES))), unknown)
    if present:
        return SpecReading("/metrics", "not read", "speculative metrics in names loadgen does not know", (),
                           tuple(sorted(present)))
    return SpecReading("/metrics", "absent", "no speculative gauges (speculation off?)")


def _scheduler_states(info: dict) -> list[dict]:
    """/server_info's per-scheduler states (internal_states), or the body itself in older versions."""
    states = info.get("internal_states")
    return [s for s in states if isinstance(s, dict)] if isinstance(states, list) and states else [info]


#: a /server_info key that holds an acceptance figure (avg_spec_accept_length; a renamed one)
INFO_FIGURE = re.compile(r"accept|verify", re.IGNORECASE)


def _info_figure_keys(state: dict) -> set[str]:
    """A state's keys that hold acceptance figures: a number (or null, before the first verify) under
    an acceptance word, outside the server arguments (speculative_*: the launch flags; a real body of
    main after 0.5.9 has 333 arguments, enable_draft_weights_cpu_backup among them)."""
    return {k for k, v in state.items() if INFO_FIGURE.search(k) and not k.startswith("speculative_")
            and (v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)))}


async def fetch_server_info(get: Getter) -> tuple[str, str | None]:
    """The server info body and the path that answered: /server_info, else the older /get_server_info."""
    for path in SERVER_INFO_PATHS:
        body = await fetch_text(get, path)
        if body is not None:
            return path, body
    return SERVER_INFO_PATHS[0], None


def server_info_reading(body: str | None, path: str = SERVER_INFO_PATHS[0]) -> SpecReading:
    """/server_info: avg_spec_accept_length, cumulative since the server started, at the top level
    or per scheduler; other acceptance keys not read."""
    return _info_reading(_json_object(body), path)


def _json_object(body: str | None) -> dict | None:
    try:
        info = orjson.loads(body) if body is not None else None
    except orjson.JSONDecodeError:
        return None
    return info if isinstance(info, dict) else None


def _info_reading(info: dict | None, path: str) -> SpecReading:
    """server_info_reading of a body already parsed (the collector parses each body once)."""
    if info is None:
        return SpecReading(path, "absent", "does not answer with a JSON object")
    states = _scheduler_states(info)
    keys = set().union(*(_info_figure_keys(s) for s in states))
    unknown = tuple(sorted(keys - {AVERAGE_KEY}))
    if any(isinstance(s.get(AVERAGE_KEY), (int, float)) for s in states):
        where = "internal_states[]" if states[0] is not info else "top level"
        return SpecReading(path, "cumulative", f"{AVERAGE_KEY} ({where}; since the server started)",
                           (AVERAGE_KEY,), unknown)
    if unknown:
        return SpecReading(path, "not read", "acceptance keys loadgen does not know", (), unknown)
    return SpecReading(path, "absent", f"no {AVERAGE_KEY} (speculation off?)")


class SglangCollector:
    """SGLang up to 0.5.9 has no spec-decode counters. /server_info gives avg_spec_accept_length, a cumulative
    average since the server started; its gauges sglang:spec_accept_length/_rate cover only recent
    decode batches. So: the server AL reported is the mean of the gauge sampled during the run
    (windowed, weighted by sample not by step), and the cumulative averages before/after are shown
    beside it; neither is the window's exact AL, and both include other traffic. Speculative names
    or keys of a version loadgen does not know are reported as not read."""

    source = "sglang gauges (windowed) + /server_info (cumulative)"

    def __init__(self) -> None:
        self.series: list[dict] = []
        self._info_before: float | None = None
        self._not_read: set[str] = set()

    async def _avg_accept(self, get: Getter) -> float | None:
        path, body = await fetch_server_info(get)
        info = _json_object(body)
        reading = _info_reading(info, path)
        self._not_read.update(reading.not_read)
        if info is None or reading.acceptance != "cumulative":
            return None
        values = [s.get(AVERAGE_KEY) for s in _scheduler_states(info)]
        averages = [v for v in values if isinstance(v, (int, float))]
        return sum(averages) / len(averages)

    async def begin(self, get: Getter) -> None:
        self._info_before = await self._avg_accept(get)

    async def poll(self, get: Getter, t_s: float) -> None:
        """One sample of the gauges: their mean over every scheduler (tp, dp, pp ranks) that exports them."""
        reading, scrape = _scrape_reading(await fetch_text(get, "/metrics"))
        self._not_read.update(reading.not_read)
        if scrape is None or ACCEPT_LENGTH not in reading.read:
            return
        values = scrape.values(set(GAUGES))
        length, rate = values[ACCEPT_LENGTH], values.get(ACCEPT_RATE)
        self.series.append({"t_s": round(t_s, 3), "acceptance_length": sum(length) / len(length),
                            "acceptance_rate": sum(rate) / len(rate) if rate else None})

    async def end(self, get: Getter) -> ServerAcceptance | None:
        await self.poll(get, float("nan"))
        info_after = await self._avg_accept(get)
        samples = [s["acceptance_length"] for s in self.series if s["acceptance_length"]]
        rates = [s["acceptance_rate"] for s in self.series
                 if s["acceptance_length"] and s["acceptance_rate"] is not None]
        not_read = sorted(self._not_read)
        if not samples and info_after is None:
            if not_read:
                return ServerAcceptance(self.source, None, exact=False, reading="not read", not_read=not_read,
                                        note=f"SGLang's speculative figures in names loadgen does not know "
                                             f"({', '.join(not_read)}): not read")
            return None
        return ServerAcceptance(
            self.source, sum(samples) / len(samples) if samples else None,
            acceptance_rate=sum(rates) / len(rates) if rates else None, exact=False,
            note="SGLang exports no counters: AL is the mean of the windowed sglang:spec_accept_length gauge "
                 "sampled during the run (start SGLang with --enable-metrics); /server_info's averages are "
                 "cumulative since the server started",
            time_series=[s for s in self.series if s["t_s"] == s["t_s"]],
            raw={"server_info_avg_accept_length_before": self._info_before,
                 "server_info_avg_accept_length_after": info_after},
            reading="windowed gauge" if samples else "cumulative", not_read=not_read)


#: recipe method -> --speculative-algorithm
ALGORITHMS = {"eagle": "EAGLE", "eagle3": "EAGLE3", "mtp": "NEXTN", "draft_model": "STANDALONE", "ngram": "NGRAM"}


def launch(recipe: Recipe, *, host: str, port: int, workdir: Path) -> Launch:
    """`python -m sglang.launch_server` with metrics on and one chunk per verify step. Draft-tree
    methods run a chain (top-k 1): n steps draft n tokens, verified as n + 1."""
    argv = [recipe.executable or "python3", "-m", "sglang.launch_server", "--model-path", recipe.model,
            "--host", host, "--port", str(port), "--tp-size", str(recipe.tensor_parallel_size),
            "--enable-metrics", "--stream-interval", "1"]
    argv += sizing_flags(recipe, gpu_memory_fraction="--mem-fraction-static", max_model_len="--context-length",
                         max_num_seqs="--max-running-requests")
    spec = recipe.speculative
    if spec.method != "none":
        n = spec.num_speculative_tokens
        assert n is not None, "servers.recipe requires num_speculative_tokens with a speculative method"
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


SCHEDULE = ScheduleSupport(
    accepts="none",
    source="sgl-project/sglang python/sglang/srt/server_args.py at v0.5.9 (--speculative-* flags: one static "
           "num_steps); its pull requests: #13376 (speculation off above a batch size) closed unmerged, #17749 and "
           "#22246 (AutoSpec, steps per batch size) closed, #21599 (--speculative-adaptive) opened 2026-03-28, "
           "after v0.5.9 (in use by 2026-03-07)",
    note="SGLang 0.5.9 drafts a fixed --speculative-num-steps at every batch size and has no batch size above which "
         "it stops speculating (--max-running-requests caps the requests it runs, speculating or not). Later "
         "versions adapt the steps to the measured acceptance (--speculative-adaptive, per batch-size range from "
         "PR #24055), which is not a schedule one can hand it. Deploy one K: the recipe's "
         "speculative.num_speculative_tokens, which the launcher renders as SGLang's steps and draft tokens.")

SPEC = EngineSpec(name="sglang", adapter=SglangAdapter, owned_by=("sglang",), default_port=30000, launch=launch,
                  personality="loadgen.emulator.sglang:Sglang", schedule_support=SCHEDULE)
