"""The report of one run as types: what report.json holds, section by section.

build_report makes a Report; the sinks, sweeps, comparisons and matrices read its attributes;
`Report.to_json()` gives report.json's content and `Report.from_json()` reads one back. The JSON
Schema shipped in loadgen/schemas/report.schema.json is generated from these classes
(`report_schema()`), and tests/unit/analysis/test_report_schema.py keeps the two equal.
Field order is the order of the keys in the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Self, cast

from loadgen.engines import ServerAcceptance

from . import codec

__all__ = [
    "READABLE_SCHEMA_VERSIONS", "SCHEMA_VERSION", "CategoryFigures", "ClientAcceptance", "ClientFigures", "CrossCheck",
    "DraftCoverage", "Distribution", "HeldLoad", "HeldRate", "Latency", "LevelCollapse", "LevelFigures", "LoadLevels",
    "LostWorker", "MeanStd", "PrefixCacheFigures", "ReadLag", "Report",
    "RunSettings", "SloCheck", "SloReport", "Speculative", "Summary", "TimeSeriesRow", "WorkerClock", "WorkersInfo",
    "ServerPerRequest", "ChatFigures", "TokenizationParity", "report_schema", "shipped_schema",
    "OverlapBin", "CategoryOverlap", "OverlapFigures",
    "AcceptanceDefinitions", "PositionBucket", "OutputLengthBin", "AcceptanceBreakdown", "AcceptanceViews",
    "PerRequestCheck", "StepsDisagreement",
    "SamplingFigures",
]

#: report.json's layout version. It changes with the schema files (loadgen/schemas/): a test pins
#: their hash per version, so a schema change without a new version fails.
SCHEMA_VERSION = 7
#: versions Report.from_json reads: version 2 only added the schema, the layout is version 1's;
#: version 3 added speculative.coverage, which older reports lack (read as None); version 4 the
#: levels section and config.concurrency_levels / level_duration_s (absent: None); version 5
#: config.proxy, config.endpoint / prompt_format, the prefix_cache and chat sections, the categories'
#: reasoning figures and requests.jsonl's cached_tokens / prompt_id (absent: None or the defaults);
#: version 6 config.output_ids, the overlap section, requests.jsonl's output_ids; the acceptance section
#: (AL definitions, by position, spread); speculative.per_request_check, the per-request check's figures
#: in server_per_request (acceptance_rate None where the engine gives no draft counts) and requests.jsonl's
#: server_steps / stream_steps; the sampling section (absent: the defaults or None); version 7 the server
#: sources' reading and not_read (what the endpoint gave for acceptance, and the speculative names it
#: did not read) and requests.jsonl's uncounted_chunks (absent: None, [] and 0)
READABLE_SCHEMA_VERSIONS = (1, 2, 3, 4, 5, 6, 7)

#: where the generated schemas ship inside the package
SCHEMA_PACKAGE = "loadgen.schemas"


class _JsonForm:
    """to_json/from_json for every section, through the one codec."""

    __slots__ = ()

    def to_json(self) -> dict:
        return cast(dict, codec.to_json(self))  # a dataclass's JSON form is an object

    @classmethod
    def from_json(cls, data: dict) -> Self:
        """ValueError, naming the path of the first value that does not fit, for anything else."""
        return cast(Self, codec.from_json(cls, data))  # the codec builds the dataclass it is given


@dataclass(frozen=True, slots=True)
class RunSettings(_JsonForm):
    """The run's settings as given (never the API key, only whether one was set), and what the run
    found out: engine, model, workers, the workload's description."""

    url: str | None
    engine: str
    model: str | None
    workload: str
    workload_path: str | None
    tokenizer: str
    chat_template: bool
    system_prompt: str | None
    isl: int | None
    input_len: int | None
    concurrency: int | None
    request_rate: float | None
    arrival: str | None
    burstiness: float | None
    ramp_up_s: float | None
    num_requests: int | None
    duration_s: float | None
    warmup: int
    max_tokens: int
    ignore_eos: bool
    temperature: float
    timeout_s: float
    connect_timeout_s: float
    first_token_timeout_s: float
    idle_timeout_s: float
    retries: int
    max_error_rate: float | None
    slo: str | None
    startup_wait_s: float
    seed: int
    api_key: str | None
    verify_tls: bool
    metrics_addr: str | None
    pushgateway: str | None
    run_id: str
    emulator: list[str] | None
    workers: int
    workload_info: dict
    loadgen_version: str
    started_at: str
    #: --concurrency-levels and --level-duration; absent before version 4 and in runs at one load
    concurrency_levels: list[int] | None = field(default=None, metadata=codec.OMIT_DEFAULT)
    level_duration_s: float | None = field(default=None, metadata=codec.OMIT_DEFAULT)
    #: the HTTP proxy the requests went through (http://HOST:PORT, never its credentials): its own delay
    #: is part of every figure; absent before version 5 and in runs with direct connections
    proxy: str | None = field(default=None, metadata=codec.OMIT_DEFAULT)
    #: --endpoint and --prompt-format; absent before version 5 and in runs with the defaults
    endpoint: str = field(default="completions", metadata=codec.OMIT_DEFAULT)
    prompt_format: str = field(default="ids", metadata=codec.OMIT_DEFAULT)
    #: --output-ids; absent before version 6 and in runs without it
    output_ids: bool = field(default=False, metadata=codec.OMIT_DEFAULT)


@dataclass(frozen=True, slots=True)
class Distribution(_JsonForm):
    """count, mean, std, min, percentiles (linear interpolation) and max; all but count null when empty."""

    count: int
    mean: float | None
    std: float | None
    min: float | None
    p25: float | None
    p50: float | None
    p75: float | None
    p90: float | None
    p95: float | None
    p99: float | None
    max: float | None


@dataclass(frozen=True, slots=True)
class Summary(_JsonForm):
    """Counts and throughput over the measured window (first send to last token)."""

    requests_sent: int
    requests_completed: int
    requests_failed: int
    requests_cancelled: int
    retries: int
    retried_errors: dict[str, int]
    duration_s: float
    input_tokens: int
    output_tokens: int
    output_tps: float | None
    request_throughput: float | None
    isl: Distribution
    #: successful requests of two or more tokens whose every token arrived at one instant (one read):
    #: their TPOT and user TPS are undefined, so they are left out of those figures. Seen with a
    #: real vLLM on a starved 2-core box: the stream buffered, then delivered whole (absent before 4)
    requests_in_one_burst: int = field(default=0, metadata=codec.OMIT_DEFAULT)


@dataclass(frozen=True, slots=True)
class Latency(_JsonForm):
    """Seconds (user_tps in tokens/s, output tokens in tokens), successful requests only. TTFT and
    E2E count from the scheduled send; icl_s and receive_lag_s are per chunk."""

    ttft_s: Distribution
    e2e_s: Distribution
    tpot_s: Distribution
    user_tps: Distribution
    output_tokens_per_request: Distribution
    queue_s: Distribution
    icl_s: Distribution
    receive_lag_s: Distribution


@dataclass(frozen=True, slots=True)
class ClientAcceptance(_JsonForm):
    """Acceptance as the client saw it: tokens per chunk after the first. Keys of histogram and
    conditional_acceptance are token counts."""

    token_counts: str
    acceptance_length: float | None
    steps: int
    histogram: dict[str, int]
    conditional_acceptance: dict[str, float]
    #: the MEAN OF PER-REQUEST AL per category (and sub-category), not the token-weighted figure that
    #: acceptance_length is; the name predates the definitions: Report.acceptance holds each one, labelled
    by_category: dict[str, float]
    by_sub_category: dict[str, float]


@dataclass(frozen=True, slots=True)
class ServerPerRequest(_JsonForm):
    """The engine's own per-request figures (llama.cpp timings, vLLM's metrics.speculative_decoding,
    TRT-LLM's iterations) summed over a category, and how many of its requests the per-request
    cross-check (analysis.speculative.per_request_check) found agreeing.

    draft_tokens, accepted_tokens, acceptance_rate = accepted / drafted: None where the engine gives
    no draft counts (TRT-LLM's stream); engine_acceptance_length = the client's decode tokens (after
    each first chunk) / the engine's decode steps."""

    requests: int
    draft_tokens: int | None
    accepted_tokens: int | None
    acceptance_rate: float | None
    engine_decode_steps: int | None = field(default=None, metadata=codec.OMIT_DEFAULT)
    engine_acceptance_length: float | None = field(default=None, metadata=codec.OMIT_DEFAULT)
    requests_checked: int | None = field(default=None, metadata=codec.OMIT_DEFAULT)
    requests_agreeing: int | None = field(default=None, metadata=codec.OMIT_DEFAULT)


@dataclass(frozen=True, slots=True)
class StepsDisagreement(_JsonForm):
    """One request whose decode steps on the stream differ from the engine's count."""

    request_id: int
    category: str
    client_decode_steps: int
    engine_decode_steps: int


@dataclass(frozen=True, slots=True)
class PerRequestCheck(_JsonForm):
    """Each request's decode steps as the stream shows them (chunks after the first; llama.cpp: the
    bursts its gaps show) against the engine's own count for that request (vLLM num_spec_steps;
    TRT-LLM tokens / avg_decoded_tokens_per_iter less the prefill; llama.cpp tokens - 1 -
    draft_n_accepted). given False: the engine at its pinned version gives no per-request figures
    on the stream, and `source` says so (never zeros)."""

    given: bool
    source: str
    requests_checked: int
    requests_agreeing: int
    #: the largest, by |client - engine| steps, largest first
    largest_disagreements: list[StepsDisagreement]
    likely_causes: list[str]


@dataclass(frozen=True, slots=True)
class CrossCheck(_JsonForm):
    """Client AL against the server's, flagged beyond the agreement tolerance, with likely causes."""

    client_acceptance_length: float | None
    server_acceptance_length: float | None
    server_source: str | None
    relative_difference: float | None
    flagged: bool
    likely_causes: list[str]
    authoritative: str
    authoritative_reason: str


@dataclass(frozen=True, slots=True)
class DraftCoverage(_JsonForm):
    """The share of decode steps that drafted (analysis.speculative.draft_coverage): drafted steps
    are the server's drafts, decode steps and tokens the client's after each prefill chunk
    (successful requests); client AL = (undrafted + drafted * server AL - discarded) / decode steps."""

    decode_steps: int
    decode_tokens: int
    drafted_steps: int
    undrafted_steps: int
    coverage: float
    predicted_client_acceptance_length: float
    discarded_accepted_tokens: int | None


@dataclass(frozen=True, slots=True)
class Speculative(_JsonForm):
    """Speculative decoding: the client's figures, the server's (best source first), their
    cross-check, and the draft coverage where the engine's drafts count decode steps exactly."""

    client: ClientAcceptance
    server: ServerAcceptance | None
    server_sources: list[ServerAcceptance]
    server_note: str | None
    server_per_request: dict[str, ServerPerRequest] | None
    cross_check: CrossCheck
    #: only where computable (exact counters of an engine whose drafts are decode steps); absent
    #: before version 3
    coverage: DraftCoverage | None = field(default=None, metadata=codec.OMIT_DEFAULT)
    #: each request's steps against the engine's per-request count; absent before version 6
    per_request_check: PerRequestCheck | None = field(default=None, metadata=codec.OMIT_DEFAULT)


@dataclass(frozen=True, slots=True)
class MeanStd(_JsonForm):
    mean: float
    std: float


@dataclass(frozen=True, slots=True)
class CategoryFigures(_JsonForm):
    """One workload category: its requests, acceptance length per request, and p50 latencies."""

    requests: int
    failed: int
    #: the mean and std of PER-REQUEST AL (each request weighs the same); Report.acceptance.by_category
    #: has the token-weighted and specdec_bench figures beside it
    acceptance_length: MeanStd | None
    ttft_p50_s: float | None
    tpot_p50_s: float | None
    user_tps_p50: float | None
    output_tokens_mean: float | None
    #: requests that streamed reasoning (chat): their reasoning and answer tokens, and the time to
    #: the first answer token; absent where no request of the category reasoned
    reasoning_tokens_mean: float | None = field(default=None, metadata=codec.OMIT_DEFAULT)
    answer_tokens_mean: float | None = field(default=None, metadata=codec.OMIT_DEFAULT)
    ttft_answer_p50_s: float | None = field(default=None, metadata=codec.OMIT_DEFAULT)


@dataclass(frozen=True, slots=True)
class ReadLag(_JsonForm):
    """How late the client processed chunks after the kernel stamped their arrival."""

    reads: int
    p50_s: float | None
    p99_s: float | None
    max_s: float | None


@dataclass(frozen=True, slots=True)
class ClientFigures(_JsonForm):
    read_lag: ReadLag | None


@dataclass(frozen=True, slots=True)
class SloCheck(_JsonForm):
    limit_s: float
    value_s: float | None
    met: bool


@dataclass(frozen=True, slots=True)
class SloReport(_JsonForm):
    """--slo: each objective (keyed METRIC_pPCT) met or not, and goodput."""

    objectives: dict[str, SloCheck]
    all_met: bool
    good_requests: int
    good_fraction: float | None
    goodput_rps: float | None
    goodput_tps: float | None


@dataclass(frozen=True, slots=True)
class HeldLoad(_JsonForm):
    """Closed loop: requests in flight against the target concurrency."""

    target_concurrency: int
    mean_in_flight: float | None
    min_in_flight: float | None
    achieved_ratio: float | None
    held: bool


@dataclass(frozen=True, slots=True)
class HeldRate(_JsonForm):
    """Open loop: the rate sent against the schedule's, and how late requests left."""

    target_rate: float
    scheduled_rate: float | None
    achieved_rate: float | None
    achieved_ratio: float | None
    late_p50_s: float | None
    late_p99_s: float | None
    late_max_s: float | None
    held: bool


@dataclass(frozen=True, slots=True)
class TimeSeriesRow(_JsonForm):
    """One second of the run, from the first send."""

    t_s: float
    output_tps: float
    in_flight: float
    acceptance_length: float | None
    completed: int
    failed: int


@dataclass(frozen=True, slots=True)
class LevelFigures(_JsonForm):
    """One level of --concurrency-levels (analysis/levels.py): its window (s from the first
    request's scheduled time), the requests scheduled in it and their p50/p99 latencies; output
    TPS and client AL over the chunks that arrived in the window."""

    concurrency: int
    start_s: float
    end_s: float
    requests: int
    completed: int
    output_tokens: int
    output_tps: float
    ttft_p50_s: float | None
    tpot_p50_s: float | None
    tpot_p99_s: float | None
    user_tps_p50: float | None
    acceptance_length: float | None
    steps: int


@dataclass(frozen=True, slots=True)
class LevelCollapse(_JsonForm):
    """The first level whose client AL (metric acceptance_length; else its TPOT p50, tpot_p50_s)
    changed by more than `threshold` (a share) against the level before."""

    concurrency: int
    previous_concurrency: int
    metric: str
    previous: float
    value: float
    change: float
    threshold: float


@dataclass(frozen=True, slots=True)
class LoadLevels(_JsonForm):
    """--concurrency-levels: figures per level, and the collapse (null: none beyond the threshold).
    No server AL per level: the server's counters are sampled about once a second on their own
    clock, not at the level boundaries."""

    level_duration_s: float
    levels: list[LevelFigures]
    collapse: LevelCollapse | None


@dataclass(frozen=True, slots=True)
class WorkerClock(_JsonForm):
    """A worker's clock offset from the parent's (ns) and the offset's error bound (null: same clock)."""

    worker: int
    where: str
    node: str
    offset_ns: int
    error_bound_ns: int | None


@dataclass(frozen=True, slots=True)
class LostWorker(_JsonForm):
    worker: int
    where: str
    at_s: float
    in_flight_failed: int
    reason: str


@dataclass(frozen=True, slots=True)
class WorkersInfo(_JsonForm):
    """Several load-generating processes (or Ray actors): their clocks and the ones lost."""

    count: int
    ray: str | None
    on_loss: str
    clocks: list[WorkerClock]
    lost: list[LostWorker]


@dataclass(frozen=True, slots=True)
class OverlapBin(_JsonForm):
    """One quartile of a category's per-request overlap (edges inclusive) and the mean per-request
    AL of its requests."""

    overlap_low: float
    overlap_high: float
    requests: int
    mean_acceptance_length: float


@dataclass(frozen=True, slots=True)
class CategoryOverlap(_JsonForm):
    """One category's prompt-output overlap (analysis/overlap.py) and how its AL follows it."""

    #: first-turn requests scored (with ids, a known prompt and at least 4 output tokens)
    requests: int
    #: mean per-request BLEU-4 style overlap (geometric mean of p1..p4, no brevity penalty)
    mean_overlap: float
    #: mean per-request p4: the share of output 4-grams found in the prompt (clipped)
    ngram_share: float
    #: mean per-request p1..p4
    precisions: list[float]
    #: Pearson's r between per-request overlap and per-request AL (tokens per step after the first
    #: chunk); null with fewer than 3 requests or no spread
    al_correlation: float | None
    #: least-squares slope of per-request AL against overlap (AL per unit of overlap)
    al_slope: float | None
    al_by_overlap: list[OverlapBin]
    #: whether prompt-lookup (n-gram) drafting is likely to pay here, from ngram_share
    verdict: str


@dataclass(frozen=True, slots=True)
class OverlapFigures(_JsonForm):
    """Prompt-output n-gram overlap on token ids per category (--output-ids). available false:
    nothing was scored, and `reason` says why (not asked, the engine gives none, none came back)."""

    available: bool
    reason: str | None
    method: str
    requests: int
    #: scored requests whose stream carried fewer ids than output tokens (llama.cpp: a token ending
    #: inside a UTF-8 character is streamed with the next one's id only), scored on the ids they have
    requests_missing_ids: int
    categories: dict[str, CategoryOverlap]


@dataclass(frozen=True, slots=True)
class PrefixCacheFigures(_JsonForm):
    """The server's prefix cache over the window (analysis/prefix_cache.py): its hit rate (cached /
    prompt tokens) and where it comes from (server counters, per-request usage, or a gauge), against
    the hit rate the run's own shared prefixes explain; the prompts sent more than once; warnings."""

    hit_rate: float | None
    source: str | None
    #: the server's counters over the window (prompt tokens found cached, and looked up), where it counts
    server_hits: float | None
    server_queries: float | None
    #: measured requests whose stream said how many of their prompt tokens were cached, and those tokens
    requests_reporting_cached_tokens: int
    cached_tokens: int | None
    expected_hit_rate: float | None
    #: the cache block the expected hits are rounded down to, and where it was found
    block_size: int
    block_size_source: str
    #: how requests were kept from the cache: the request field of --cache-isolation, or "unique prefix"
    isolation: str | None
    #: measured first turns whose prompt an earlier measured request sent, and those the warm-up sent
    repeated_prompts: int
    warmup_prompts_measured: int
    warnings: list[str]


@dataclass(frozen=True, slots=True)
class TokenizationParity(_JsonForm):
    """The prompt tokens the server counted (usage.prompt_tokens) against the local template's
    count of the same request. A difference means the server tokenized something else than the
    workload measured: a wrong --tokenizer or chat template is the usual cause."""

    requests: int  # requests whose server sent usage.prompt_tokens
    mismatched: int  # of them, the ones whose count differs from the local one
    server_prompt_tokens: int  # summed over those requests
    local_prompt_tokens: int
    #: the first mismatch, as the warning line says it; null where none
    example: str | None
    flagged: bool


@dataclass(frozen=True, slots=True)
class ChatFigures(_JsonForm):
    """A run that sent text (--endpoint chat, --prompt-format text) or streamed reasoning: how its
    tokens were counted, its reasoning and answer tokens apart, and tokenization parity."""

    endpoint: str
    prompt_format: str
    #: "usage" (the engine's own counts), "one_per_token", "one_per_chunk", or "estimated" (the
    #: streamed text tokenized with the run's tokenizer at each request's end)
    token_counts: str
    #: the report's figures that rest on estimated counts (empty where counts are the engine's)
    estimated_figures: list[str]
    reasoning_tokens: int
    answer_tokens: int
    #: scheduled send -> first answer (content) token, successful requests with an answer; TTFT
    #: (latency.ttft_s) counts to the first token of any kind, reasoning included
    ttft_answer_s: Distribution
    parity: TokenizationParity | None


@dataclass(frozen=True, slots=True)
class AcceptanceDefinitions(_JsonForm):
    """AL of the same stream under the definitions the field uses (analysis/acceptance_views.py):
    token_weighted pools every decode step (tokens / steps, first chunk excluded);
    per_request_mean averages each request's AL (SPEED-Bench's per-category table); specdec_bench is
    what NVIDIA Model-Optimizer's specdec_bench prints (a one-token first chunk and every last chunk
    dropped, then the mean over requests). `requests`: successful ones; `steps`: decode steps."""

    token_weighted: float | None
    per_request_mean: float | None
    specdec_bench: float | None
    requests: int
    steps: int


@dataclass(frozen=True, slots=True)
class PositionBucket(_JsonForm):
    """Decode steps that started at output positions [start_tokens, end_tokens) (tokens produced
    before the step, the prefill's included): their tokens / steps."""

    start_tokens: int
    end_tokens: int
    steps: int
    tokens: int
    acceptance_length: float


@dataclass(frozen=True, slots=True)
class OutputLengthBin(_JsonForm):
    """Requests of more than start_tokens and at most end_tokens output tokens: the mean and std of
    their AL each."""

    start_tokens: int
    end_tokens: int
    requests: int
    acceptance_length_mean: float
    acceptance_length_std: float


@dataclass(frozen=True, slots=True)
class AcceptanceBreakdown(_JsonForm):
    """One group of successful requests (the run, or a category): the AL definitions, the
    distribution of per-request AL, AL by output position and against output length."""

    definitions: AcceptanceDefinitions
    per_request: Distribution
    by_position: list[PositionBucket]
    by_output_length: list[OutputLengthBin]


@dataclass(frozen=True, slots=True)
class AcceptanceViews(_JsonForm):
    """Acceptance length as the papers see it (version 6 on): the run's and each category's
    breakdown. bucket_tokens is the width of the position buckets and output-length bins (an
    eighth of max_tokens, rounded up to a multiple of 8)."""

    bucket_tokens: int
    run: AcceptanceBreakdown
    by_category: dict[str, AcceptanceBreakdown]


@dataclass(frozen=True, slots=True)
class SamplingFigures(_JsonForm):
    """Which of the workload's prompts the measured window sent (analysis/sampling.py; measured
    first turns by prompt id, warm-up excluded): a dataset run without -n sends each exactly once."""

    workload_prompts: int
    requests: int
    distinct_prompts: int
    requests_by_category: dict[str, int]
    prompts_sent_more_than_once: int
    most_sends_of_one_prompt: int


@dataclass(frozen=True, slots=True)
class Report(_JsonForm):
    """The report of one run's measured window (warm-up excluded): report.json."""

    schema_version: int
    partial: bool
    config: RunSettings
    summary: Summary
    latency: Latency
    speculative: Speculative
    categories: dict[str, CategoryFigures]
    client: ClientFigures
    slo: SloReport | None
    load: HeldLoad | HeldRate | None
    time_series: list[TimeSeriesRow]
    errors: dict[str, int]
    error_details: dict[str, int]
    error_examples: dict[str, list[str]]
    #: why the run stopped before its end (--max-error-rate); null when it did not
    stop_reason: str | None = None
    #: only with several worker processes
    workers: WorkersInfo | None = field(default=None, metadata=codec.OMIT_DEFAULT)
    #: only in a report `loadgen report DIR` rebuilt from the journal of a killed run
    rebuilt_from_journal: bool = field(default=False, metadata=codec.OMIT_DEFAULT)
    #: only in a run with --concurrency-levels (version 4 on)
    levels: LoadLevels | None = field(default=None, metadata=codec.OMIT_DEFAULT)
    #: the prefix cache's figures (version 5 on; absent from a report rebuilt from the journal)
    prefix_cache: PrefixCacheFigures | None = field(default=None, metadata=codec.OMIT_DEFAULT)
    #: only in a run that sent text or streamed reasoning (version 5 on)
    chat: ChatFigures | None = field(default=None, metadata=codec.OMIT_DEFAULT)
    #: prompt-output overlap (version 6 on; absent from a report rebuilt from the journal)
    overlap: OverlapFigures | None = field(default=None, metadata=codec.OMIT_DEFAULT)
    #: AL under each definition, by output position, its spread and against output length (version 6 on)
    acceptance: AcceptanceViews | None = field(default=None, metadata=codec.OMIT_DEFAULT)
    #: the prompts sent, by id and category (version 6 on; absent from a report rebuilt from the journal)
    sampling: SamplingFigures | None = field(default=None, metadata=codec.OMIT_DEFAULT)

    @classmethod
    def from_json(cls, data: dict) -> Report:
        """A report.json read back; ValueError for another layout version or a value that does not fit."""
        version = data.get("schema_version") if isinstance(data, dict) else None
        if version not in READABLE_SCHEMA_VERSIONS:
            raise ValueError(f"schema_version {version!r} is not one this loadgen reads "
                             f"({', '.join(map(str, READABLE_SCHEMA_VERSIONS))})")
        return cast(Report, codec.from_json(cls, data))  # the codec builds the dataclass it is given

    @property
    def load_value(self) -> float:
        """The load the run was measured at: its request rate (open loop; a trace's mean rate), else its
        concurrency."""
        if self.config.request_rate:
            return self.config.request_rate
        if isinstance(self.load, HeldRate):
            return self.load.target_rate
        assert self.config.concurrency is not None, "a run without a request rate records its concurrency"
        return self.config.concurrency

    @property
    def load_kind(self) -> str:
        """What load_value counts: "request_rate" (open loop, a trace) or "concurrency"; the axis a single
        run lies on when compared with sweeps."""
        return "request_rate" if self.config.request_rate or isinstance(self.load, HeldRate) else "concurrency"


def report_schema() -> dict:
    """report.json's JSON Schema, generated from the types above."""
    return codec.json_schema(Report, title="loadgen report.json",
                             schema_id="urn:loadgen:schemas:report")


def shipped_schema(name: str) -> dict:
    """A schema shipped in the package: "report" or "requests" (one line of requests.jsonl)."""
    return json.loads(resources.files(SCHEMA_PACKAGE).joinpath(f"{name}.schema.json").read_text())
