"""Records -> the run's Report (report_types.py; written as report.json and shown on the console)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

from loadgen.engines import EngineAdapter, ServerAcceptance
from loadgen.records import RequestRecord

from .acceptance_views import acceptance_breakdown, position_bucket_tokens
from .chat import UNREAD_COUNTS, chat_figures, token_counts_of, ttft_answer_s
from .levels import find_collapse, level_figures
from .load import held_load, held_rate
from .report_types import (
    SCHEMA_VERSION,
    AcceptanceBreakdown,
    AcceptanceViews,
    CategoryFigures,
    ChatFigures,
    ClientAcceptance,
    ClientFigures,
    CrossCheck,
    Distribution,
    DraftCoverage,
    HeldLoad,
    HeldRate,
    Latency,
    LevelCollapse,
    LevelFigures,
    LoadLevels,
    MeanStd,
    OverlapFigures,
    PerRequestCheck,
    PrefixCacheFigures,
    ReadLag,
    Report,
    RunSettings,
    SamplingFigures,
    ServerPerRequest,
    SloReport,
    Speculative,
    Summary,
    TimeSeriesRow,
    WorkersInfo,
)
from .slo import SLO_METRICS, slo_report
from .speculative import (
    conditional_acceptance,
    cross_check,
    draft_coverage,
    mean_from_histogram,
    per_request_check,
    request_acceptance_length,
    request_decode_steps,
    step_histogram,
)
from .stats import distribution
from .timeseries import time_series

__all__ = ["REBUILT_SERVER_NOTE", "build_report", "latency_samples"]

#: the server note of a report rebuilt from the journal
REBUILT_SERVER_NOTE = "rebuilt from the journal: the engine's metrics of the run were not kept"
_NS = 1e-9


def latency_samples(records: Sequence[RequestRecord], *, per_chunk: bool = True) -> dict[str, np.ndarray]:
    """Per-request (and, with per_chunk, per-gap icl_s and receive_lag_s) samples in seconds,
    successful requests only.

    TTFT and E2E count from the scheduled send time; queue_s is the scheduled-to-sent delay.
    TPOT = (E2E - TTFT) / (output tokens - 1), defined for outputs of two tokens or more.
    """
    ok = [r for r in records if r.ok and r.chunk_ns]
    ttft_of, e2e_of, tpot_of = SLO_METRICS["ttft"], SLO_METRICS["e2e"], SLO_METRICS["tpot"]
    ttft = np.array([ttft_of(r) for r in ok], dtype=np.float64)
    e2e = np.array([e2e_of(r) for r in ok], dtype=np.float64)
    queue = np.array([r.sent_ns - r.scheduled_ns for r in ok], dtype=np.float64) * _NS
    tpot = np.array([t for t in map(tpot_of, ok) if t is not None], dtype=np.float64)
    samples = {
        "ttft_s": ttft, "e2e_s": e2e, "tpot_s": tpot,
        "user_tps": 1.0 / tpot if tpot.size else tpot,
        "output_tokens_per_request": np.array([r.output_tokens for r in ok], dtype=np.float64),
        "queue_s": queue,
    }
    if per_chunk:
        samples["icl_s"] = _per_chunk_seconds(ok, lambda r: r.chunk_ns, diff=True)
        samples["receive_lag_s"] = _per_chunk_seconds(ok, lambda r: r.receive_lag_ns, diff=False)
    return samples


def _per_chunk_seconds(records: Sequence[RequestRecord], field, *, diff: bool) -> np.ndarray:
    """One float64 array of a per-chunk quantity over all records, filled in place: a long run's
    millions of gaps cost one array, not per-record pieces plus their concatenation."""
    arrays = [np.frombuffer(field(r), dtype=np.int64) for r in records]
    out = np.empty(sum(max(a.size - diff, 0) for a in arrays), dtype=np.float64)
    at = 0
    for a in arrays:
        n = max(a.size - diff, 0)
        if n:
            if diff:
                np.subtract(a[1:], a[:-1], out=out[at:at + n], casting="unsafe")
            else:
                out[at:at + n] = a
            at += n
    out *= _NS
    return out


def _client_speculative(records: Sequence[RequestRecord], token_counts: str) -> ClientAcceptance:
    ok = [r for r in records if r.ok]
    hist = step_histogram(r.chunk_tokens for r in ok)
    per_category: dict[str, list[float]] = defaultdict(list)
    per_sub: dict[str, list[float]] = defaultdict(list)
    for r in ok:
        al = request_acceptance_length(r.chunk_tokens)
        if al is not None:
            per_category[r.category].append(al)
            if r.sub_category:
                per_sub[f"{r.category}/{r.sub_category}"].append(al)
    return ClientAcceptance(
        token_counts=token_counts,
        acceptance_length=mean_from_histogram(hist),
        steps=sum(hist.values()),
        histogram={str(k): n for k, n in hist.items()},
        conditional_acceptance={str(k): p for k, p in conditional_acceptance(hist).items()},
        by_category={c: float(np.mean(v)) for c, v in sorted(per_category.items())},
        by_sub_category={c: float(np.mean(v)) for c, v in sorted(per_sub.items())},
    )


def _categories(records: Sequence[RequestRecord]) -> dict[str, CategoryFigures]:
    groups: dict[str, list[RequestRecord]] = defaultdict(list)
    for r in records:
        groups[r.category].append(r)
    table = {}
    for category, group in sorted(groups.items()):
        samples = latency_samples(group, per_chunk=False)
        als = [a for a in (request_acceptance_length(r.chunk_tokens) for r in group if r.ok) if a is not None]
        reasoned = [r for r in group if r.ok and r.reasoning_tokens]
        answer_ttft = ttft_answer_s(reasoned)
        table[category] = CategoryFigures(
            requests=len(group),
            failed=sum(1 for r in group if not r.ok),
            acceptance_length=MeanStd(mean=float(np.mean(als)), std=float(np.std(als))) if als else None,
            ttft_p50_s=float(np.median(samples["ttft_s"])) if samples["ttft_s"].size else None,
            tpot_p50_s=float(np.median(samples["tpot_s"])) if samples["tpot_s"].size else None,
            user_tps_p50=float(np.median(samples["user_tps"])) if samples["user_tps"].size else None,
            output_tokens_mean=float(np.mean(samples["output_tokens_per_request"]))
            if samples["output_tokens_per_request"].size else None,
            reasoning_tokens_mean=float(np.mean([r.reasoning_tokens for r in reasoned])) if reasoned else None,
            answer_tokens_mean=float(np.mean([r.output_tokens - r.reasoning_tokens for r in reasoned]))
            if reasoned else None,
            ttft_answer_p50_s=float(np.median(answer_ttft)) if answer_ttft.size else None,
        )
    return table


def build_report(*, config: dict, records: Sequence[RequestRecord], adapter: EngineAdapter,
                 server: Sequence[ServerAcceptance], partial: bool = False, client_read_lag: dict | None = None,
                 target_concurrency: int | None = None, target_rate: float | None = None,
                 slo: Sequence[tuple[str, float, float]] = (), stop_reason: str | None = None,
                 workers: WorkersInfo | None = None, rebuilt_from_journal: bool = False,
                 prefix_cache: PrefixCacheFigures | None = None, overlap: dict | None = None,
                 sampling: SamplingFigures | None = None) -> Report:
    """The report of one measured window. `records` excludes warm-up requests; `server` holds what
    the engine's collectors found over that window, best source first. `config` is the run's
    public settings (RunSettings' keys); the metric functions' dicts are read into their types
    here, so a figure that does not fit its type fails the run that made it, not a later reader."""
    started = [r.sent_ns for r in records if r.sent_ns]
    ended = [r.last_ns for r in records if r.last_ns]
    window_s = (max(ended) - min(started)) * _NS if started and ended else 0.0
    completed = sum(1 for r in records if r.ok)
    cancelled = sum(1 for r in records if r.outcome == "cancelled")
    failed = len(records) - completed - cancelled  # so completed + failed + cancelled = sent, always
    output_tokens = sum(r.output_tokens for r in records)
    samples = latency_samples(records)
    primary = next((r for r in server if r.acceptance_length is not None), server[0] if server else None)
    token_counts = token_counts_of(adapter, config.get("endpoint", "completions"))
    if any(r.uncounted_chunks for r in records):
        token_counts = UNREAD_COUNTS
    client = _client_speculative(records, token_counts)
    chat = chat_figures(records, config, token_counts)
    coverage = (draft_coverage({int(k): n for k, n in client.histogram.items()}, primary)
                if adapter.drafts_are_decode_steps else None)
    server_note: str | None
    if rebuilt_from_journal:
        server_note = REBUILT_SERVER_NOTE
    elif primary:
        server_note = primary.note
    else:
        server_note = (f"the {adapter.name} adapter found no server acceptance figures (no speculation configured, "
                       "or metrics disabled)")
    load = (HeldRate.from_json(held_rate(records, target_rate)) if target_rate else
            HeldLoad.from_json(held_load(records, target_concurrency)) if target_concurrency else None)
    return Report(
        schema_version=SCHEMA_VERSION,
        partial=partial,
        config=RunSettings.from_json(config),
        summary=Summary(
            requests_sent=len(records),
            requests_completed=completed,
            requests_failed=failed,
            requests_cancelled=cancelled,
            # --retries: extra attempts made before a request's first token, and why each was needed
            retries=sum(len(r.retried) for r in records),
            retried_errors=dict(Counter(detail for r in records for detail in r.retried)),
            duration_s=window_s,
            input_tokens=sum(r.prompt_tokens for r in records),
            output_tokens=output_tokens,
            output_tps=output_tokens / window_s if window_s > 0 else None,
            request_throughput=completed / window_s if window_s > 0 else None,
            # the input lengths actually sent (every request, multi-turn follow-ups included)
            isl=Distribution.from_json(distribution([r.prompt_tokens for r in records])),
            requests_in_one_burst=sum(1 for r in records if r.ok and r.output_tokens > 1 and r.chunk_ns
                                      and r.last_ns == r.first_ns),
        ),
        latency=Latency(**{name: Distribution.from_json(distribution(values, reorder=True))
                           for name, values in samples.items()}),
        speculative=Speculative(
            client=client,
            server=primary,
            server_sources=list(server),
            server_note=server_note,
            server_per_request=_server_per_request(records),
            cross_check=CrossCheck.from_json(cross_check(client.acceptance_length, primary, adapter.authoritative,
                                                         (client_read_lag or {}).get("p99_s"), coverage)),
            coverage=DraftCoverage.from_json(coverage) if coverage else None,
            per_request_check=PerRequestCheck.from_json(per_request_check(records, adapter.per_request_figures)),
        ),
        categories=_categories(records),
        # Chunks are timed by the kernel's arrival stamps; this is how late the client processed
        # them. Large values mean the client was busy, not that the server was slow.
        client=ClientFigures(read_lag=ReadLag.from_json(client_read_lag) if client_read_lag is not None else None),
        # --slo: each objective met or not, and goodput (requests meeting every limit themselves)
        slo=SloReport.from_json(slo_report(records, slo, window_s)) if slo else None,
        load=load,
        # per second from the first send: output_tps, in_flight, acceptance_length, completed, failed
        time_series=[TimeSeriesRow.from_json(row) for row in time_series(records)],
        errors=dict(Counter(r.error.kind for r in records if r.error is not None)),
        # the same, split by HTTP status and timeout phase: "http_status/503", "timeout/first_token"
        error_details=dict(Counter(r.error.detail for r in records if r.error is not None)),
        error_examples=_error_examples(records),
        stop_reason=stop_reason,
        workers=workers,
        rebuilt_from_journal=rebuilt_from_journal,
        levels=_levels(records, config),
        prefix_cache=prefix_cache,
        chat=ChatFigures.from_json(chat) if chat else None,
        overlap=OverlapFigures.from_json(overlap) if overlap else None,
        acceptance=_acceptance_views(records),
        sampling=sampling,
    )


def _acceptance_views(records: Sequence[RequestRecord]) -> AcceptanceViews | None:
    """The AL definitions, by position, spread and against length, for the run and each category
    (successful requests); None where no request streamed a token."""
    ok = [r for r in records if r.ok and len(r.chunk_tokens)]
    if not ok:
        return None
    width = position_bucket_tokens(max(r.max_tokens for r in ok))
    groups: dict[str, list] = defaultdict(list)
    for r in ok:
        groups[r.category].append(r.chunk_tokens)
    return AcceptanceViews(
        bucket_tokens=width,
        run=AcceptanceBreakdown.from_json(acceptance_breakdown([r.chunk_tokens for r in ok], width)),
        by_category={name: AcceptanceBreakdown.from_json(acceptance_breakdown(chunks, width))
                     for name, chunks in sorted(groups.items())})


def _levels(records: Sequence[RequestRecord], config: dict) -> LoadLevels | None:
    """--concurrency-levels (the run's settings name them): figures per level and the collapse."""
    levels, level_s = config.get("concurrency_levels"), config.get("level_duration_s")
    if not levels or not level_s:
        return None
    rows = level_figures(records, levels, level_s)
    collapse = find_collapse(rows)
    return LoadLevels(level_duration_s=level_s, levels=[LevelFigures.from_json(row) for row in rows],
                      collapse=LevelCollapse.from_json(collapse) if collapse else None)


def _server_per_request(records: Sequence[RequestRecord]) -> dict[str, ServerPerRequest] | None:
    """The engine's own per-request figures by category (llama.cpp timings, vLLM's
    metrics.speculative_decoding, TRT-LLM's iterations): draft counts where it gives them, its decode
    steps and the per-request cross-check's agreement (request_decode_steps)."""
    by_category: dict[str, list[RequestRecord]] = defaultdict(list)
    for r in records:
        if r.server_draft_tokens or r.server_steps is not None:
            by_category[r.category].append(r)
    if not by_category:
        return None
    figures = {}
    for category, group in sorted(by_category.items()):
        counted = [r for r in group if r.server_draft_tokens is not None]
        drafted = sum(r.server_draft_tokens or 0 for r in counted) if counted else None
        accepted = sum(r.server_accepted_tokens or 0 for r in counted) if counted else None
        pairs = [(r, p) for r in group if (p := request_decode_steps(r)) is not None]
        engine_steps = sum(p[1] for _, p in pairs)
        decode_tokens = sum(sum(r.chunk_tokens[1:]) for r, _ in pairs)
        figures[category] = ServerPerRequest(
            requests=len(group), draft_tokens=drafted, accepted_tokens=accepted,
            acceptance_rate=accepted / drafted if drafted and accepted is not None else None,
            engine_decode_steps=engine_steps if pairs else None,
            engine_acceptance_length=decode_tokens / engine_steps if engine_steps else None,
            requests_checked=len(pairs) if pairs else None,
            requests_agreeing=sum(1 for _, p in pairs if p[0] == p[1]) if pairs else None)
    return figures


def _error_examples(records: Sequence[RequestRecord], per_kind: int = 3) -> dict[str, list[str]]:
    examples: dict[str, list[str]] = defaultdict(list)
    for r in records:
        if r.error is not None and len(examples[r.error.kind]) < per_kind:
            examples[r.error.kind].append(r.error.message)
    return dict(examples)
