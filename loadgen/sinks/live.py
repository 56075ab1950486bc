"""Live Prometheus metrics of a run: the client's view (what users feel), to chart in Grafana
beside the engine's own metrics.

Finished requests are queued in the parent process (records from worker processes arrive there
too, so there is one consistent view), never touched per chunk, and folded into the figures at
scrape time on the metrics server's thread: all queued requests' gaps and tokens per step go into
the histograms in a few numpy calls. The histograms are kept as bucket-count arrays and handed to
prometheus-client through a custom collector. Warm-up requests are left out, as in the report.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import cast
from wsgiref.simple_server import WSGIServer

import numpy as np
from prometheus_client import CollectorRegistry, push_to_gateway, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from loadgen.analysis.acceptance_views import specdec_bench_request_acceptance_length
from loadgen.analysis.speculative import request_acceptance_length
from loadgen.config import DEFAULT_METRICS_ADDR, parse_addr
from loadgen.errors import UsageError
from loadgen.records import RequestRecord

__all__ = ["LiveMetrics", "DEFAULT_METRICS_ADDR", "MAX_CATEGORIES"]

#: categories beyond this many share the label "other" (bounded cardinality)
MAX_CATEGORIES = 32
#: queued requests folded per numpy pass at most
ABSORB_BATCH = 4096

# Buckets for LLM serving: TTFT from tens of ms (short prompts) to a minute (32k prompts under
# load); steps from ~1 ms (small draft models) to seconds (preemption); E2E to ten minutes.
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0,
                15.0, 20.0, 30.0, 60.0)
STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.0175, 0.02, 0.0225, 0.025, 0.03, 0.035,
                0.04, 0.05, 0.06, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5)
E2E_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0,
               300.0, 600.0)
TOKENS_PER_STEP_BUCKETS = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 16)


class _Histogram:
    """Bucket counts (not cumulative), sum and count of one labelled series."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = np.asarray(bounds, dtype=np.float64)
        self.counts = np.zeros(len(bounds) + 1, dtype=np.int64)  # the last is +Inf only
        self.sum = 0.0


    def observe(self, values: np.ndarray) -> None:
        if values.size:
            # le is inclusive: the first bound >= value
            self.counts += np.bincount(np.searchsorted(self.bounds, values, side="left"),
                                       minlength=self.counts.size)
            self.sum += float(values.sum())

    def buckets(self) -> list[tuple[str, float]]:
        cumulative = np.cumsum(self.counts)
        return [*((_le(b), float(c)) for b, c in zip(self.bounds, cumulative)), ("+Inf", float(cumulative[-1]))]


def _le(bound: float) -> str:
    return repr(float(bound))


@dataclass
class _Category:
    requests: dict[str, int] = field(default_factory=dict)  # outcome -> count
    errors: dict[str, int] = field(default_factory=dict)  # kind -> count
    input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    ttft: _Histogram = field(default_factory=lambda: _Histogram(TTFT_BUCKETS))
    tpot: _Histogram = field(default_factory=lambda: _Histogram(STEP_BUCKETS))
    icl: _Histogram = field(default_factory=lambda: _Histogram(STEP_BUCKETS))
    e2e: _Histogram = field(default_factory=lambda: _Histogram(E2E_BUCKETS))
    ttft_answer: _Histogram = field(default_factory=lambda: _Histogram(TTFT_BUCKETS))
    tokens_per_step: _Histogram = field(default_factory=lambda: _Histogram(TOKENS_PER_STEP_BUCKETS))
    #: sums and counts of per-request AL, first chunk excluded and specdec_bench's trimming
    request_al_sum: float = 0.0
    request_al_count: int = 0
    specdec_bench_al_sum: float = 0.0
    specdec_bench_al_count: int = 0

    def acceptance_lengths(self) -> dict[str, float]:
        """AL by definition (analysis/acceptance_views.py), where there is a figure: token-weighted
        from the tokens-per-step histogram, the two per-request means from their sums."""
        steps = int(self.tokens_per_step.counts.sum())
        figures = {"token_weighted": (self.tokens_per_step.sum, steps),
                   "per_request_mean": (self.request_al_sum, self.request_al_count),
                   "specdec_bench": (self.specdec_bench_al_sum, self.specdec_bench_al_count)}
        return {name: total / n for name, (total, n) in figures.items() if n}


class LiveMetrics:
    """The run's metrics, as a prometheus-client collector; `serve` exposes them over HTTP."""

    def __init__(self, *, run_id: str, engine: str, model: str, workload: str, target_concurrency: int,
                 in_flight: Callable[[], int], version: str, endpoint: str = "completions",
                 token_counts: str = "usage") -> None:
        """token_counts "estimated" (chat replies tokenized by the client) marks every figure built
        on tokens per chunk (loadgen_tokens_per_step, the inter-chunk gaps) as an estimate: it is a
        label of loadgen_run_info, beside the endpoint the run sent to."""
        self._const = {"run_id": run_id, "engine": engine, "model": model, "workload": workload}
        self._info = self._const | {"version": version, "endpoint": endpoint, "token_counts": token_counts}
        self._target = target_concurrency
        self._in_flight = in_flight
        self._categories: dict[str, _Category] = {}
        self._pending: deque[RequestRecord] = deque()
        self._lock = threading.Lock()  # scrapes run on the HTTP server's thread
        self._server_al: float | None = None
        self._started = time.time()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    # -- updates -----------------------------------------------------------------------------

    def observe(self, record: RequestRecord) -> None:
        """One finished request (the event loop's thread): only queued here. The queue is folded
        into the histograms at the next scrape (or push), many requests per numpy call, so the
        run's read loop never pays for it; requests that finish together (streams started
        together) would otherwise cost one burst of updates at once."""
        if not record.warmup:
            self._pending.append(record)  # deque.append: atomic, no lock needed

    def _absorb(self) -> None:
        """Fold the queued requests into the per-category figures (scrape thread, under the lock)."""
        batch: dict[str, list[RequestRecord]] = {}
        known = set(self._categories)
        pending = self._pending
        while pending:
            record = pending.popleft()
            name = record.category
            if name not in known:
                name = name if len(known) < MAX_CATEGORIES else "other"
                known.add(name)
            batch.setdefault(name, []).append(record)
            if len(batch[name]) >= ABSORB_BATCH:  # bounds the temporary arrays on a huge backlog
                self._fold(name, batch.pop(name))
        for name, records in batch.items():
            self._fold(name, records)

    def _fold(self, name: str, records: list[RequestRecord]) -> None:
        category = self._categories.setdefault(name, _Category())
        timed = []
        for r in records:
            category.requests[r.outcome] = category.requests.get(r.outcome, 0) + 1
            if r.error is not None:
                category.errors[r.error.kind] = category.errors.get(r.error.kind, 0) + 1
            category.input_tokens += r.prompt_tokens
            category.output_tokens += r.output_tokens
            category.reasoning_tokens += r.reasoning_tokens
            if r.ok and r.chunk_ns:
                timed.append(r)
                al = request_acceptance_length(r.chunk_tokens)
                if al is not None:
                    category.request_al_sum += al
                    category.request_al_count += 1
                category.specdec_bench_al_sum += specdec_bench_request_acceptance_length(r.chunk_tokens)
                category.specdec_bench_al_count += 1
        if not timed:
            return
        first = np.array([r.first_ns for r in timed], dtype=np.int64)
        last = np.array([r.last_ns for r in timed], dtype=np.int64)
        scheduled = np.array([r.scheduled_ns for r in timed], dtype=np.int64)
        tokens = np.array([r.output_tokens for r in timed], dtype=np.int64)
        category.ttft.observe((first - scheduled) * 1e-9)
        answer = np.array([r.first_answer_ns for r in timed], dtype=np.int64)
        category.ttft_answer.observe((answer - scheduled)[answer > 0] * 1e-9)
        category.e2e.observe((last - scheduled) * 1e-9)
        multi = (tokens > 1) & (last > first)
        category.tpot.observe((last - first)[multi] * 1e-9 / (tokens[multi] - 1))
        # All requests' chunks in one array; the gaps and first chunks at request boundaries dropped.
        lengths = np.array([len(r.chunk_ns) for r in timed], dtype=np.int64)
        starts = np.cumsum(lengths) - lengths
        stamps = np.concatenate([np.frombuffer(r.chunk_ns, dtype=np.int64) for r in timed])
        counts = np.concatenate([np.frombuffer(r.chunk_tokens, dtype=np.int32) for r in timed])
        inside = np.ones(stamps.size, dtype=bool)
        inside[starts] = False  # a request's first chunk: no gap before it, and the prefill, not a step
        category.icl.observe(np.diff(stamps)[inside[1:]] * 1e-9)
        category.tokens_per_step.observe(counts[inside].astype(np.float64))

    def set_server_acceptance_length(self, value: float | None) -> None:
        self._server_al = value

    # -- the collector (scrape thread) -------------------------------------------------------

    def collect(self) -> Iterator:
        const_names, const_values = list(self._const), list(self._const.values())
        labels = [*const_names, "category"]
        info = GaugeMetricFamily("loadgen_run_info", "The run: its id, engine, model, workload, loadgen version.",
                                 labels=list(self._info))
        info.add_metric(list(self._info.values()), 1)
        yield info
        start = GaugeMetricFamily("loadgen_run_start_time_seconds", "Unix time the run started.", labels=const_names)
        start.add_metric(const_values, self._started)
        yield start
        for name, doc, value in (
                ("loadgen_inflight_requests", "Requests in flight now (all worker processes).", self._in_flight()),
                ("loadgen_target_concurrency", "Requests the run keeps in flight (closed loop).", self._target)):
            gauge = GaugeMetricFamily(name, doc, labels=const_names)
            gauge.add_metric(const_values, value)
            yield gauge
        if self._server_al is not None:
            gauge = GaugeMetricFamily("loadgen_server_acceptance_length",
                                      "The engine's acceptance length over its last sampled window (its own metrics).",
                                      labels=const_names)
            gauge.add_metric(const_values, self._server_al)
            yield gauge
        with self._lock:
            self._absorb()
            categories = dict(self._categories)
            requests = CounterMetricFamily("loadgen_requests", "Finished requests, by outcome (ok, error, cancelled).",
                                           labels=[*labels, "outcome"])
            errors = CounterMetricFamily("loadgen_errors", "Failed requests, by error kind.", labels=[*labels, "kind"])
            tokens_in = CounterMetricFamily("loadgen_input_tokens", "Prompt tokens of finished requests.",
                                            labels=labels)
            tokens_out = CounterMetricFamily("loadgen_output_tokens", "Output tokens of finished requests.",
                                             labels=labels)
            tokens_reasoning = CounterMetricFamily("loadgen_reasoning_tokens", "Output tokens of finished requests "
                                                   "that streamed as reasoning (chat; in loadgen_output_tokens too).",
                                                   labels=labels)
            acceptance = GaugeMetricFamily(
                "loadgen_acceptance_length", "Client acceptance length of finished requests, by definition: "
                "token_weighted (steps pooled), per_request_mean, specdec_bench (Model-Optimizer's trimming).",
                labels=[*labels, "definition"])
            histograms = [
                (HistogramMetricFamily("loadgen_ttft_seconds", "Time to first token, from the scheduled send.",
                                       labels=labels), "ttft"),
                (HistogramMetricFamily("loadgen_ttft_answer_seconds", "Time to the first answer token (after "
                                       "any reasoning), from the scheduled send.", labels=labels), "ttft_answer"),
                (HistogramMetricFamily("loadgen_tpot_seconds", "Time per output token after the first, per request.",
                                       labels=labels), "tpot"),
                (HistogramMetricFamily("loadgen_inter_chunk_seconds", "Gap between token-carrying chunks (steps).",
                                       labels=labels), "icl"),
                (HistogramMetricFamily("loadgen_e2e_seconds", "Scheduled send to last token, per request.",
                                       labels=labels), "e2e"),
                (HistogramMetricFamily("loadgen_tokens_per_step", "Tokens per chunk after the first (acceptance "
                                       "length where a chunk is one engine step).", labels=labels), "tokens_per_step"),
            ]
            for name, category in sorted(categories.items()):
                values = [*const_values, name]
                for outcome, n in sorted(category.requests.items()):
                    requests.add_metric([*values, outcome], n)
                for kind, n in sorted(category.errors.items()):
                    errors.add_metric([*values, kind], n)
                tokens_in.add_metric(values, category.input_tokens)
                tokens_out.add_metric(values, category.output_tokens)
                tokens_reasoning.add_metric(values, category.reasoning_tokens)
                for definition, al in category.acceptance_lengths().items():
                    acceptance.add_metric([*values, definition], al)
                for family, attribute in histograms:
                    hist = getattr(category, attribute)
                    family.add_metric(values, hist.buckets(), hist.sum)
        yield from (requests, errors, tokens_in, tokens_out, tokens_reasoning, acceptance,
                    *(family for family, _ in histograms))

    # -- exposure ----------------------------------------------------------------------------

    def serve(self, addr: str) -> str:
        """Serve /metrics at HOST:PORT (port 0: any free one); returns the URL."""
        host, port = parse_addr(addr)
        try:
            self._server, self._thread = start_http_server(port, host, self.registry)
        except OSError as exc:
            raise UsageError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}; "
                             "pass --metrics-addr HOST:PORT (port 0 for any free one) or --no-metrics") from None
        # typeshed allows the bytes host a caller may bind to; the bound address is getsockname()'s: str, int
        bound_host, bound_port = cast(tuple[str, int], self._server.server_address[:2])
        return f"http://{bound_host}:{bound_port}/metrics"

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def push(self, gateway: str) -> None:
        """Push the final figures to a Pushgateway, grouped by job "loadgen" and the run id."""
        push_to_gateway(gateway, job="loadgen", registry=self.registry,
                        grouping_key={"run_id": self._const["run_id"]}, timeout=10)
