"""Live metrics: what a scrape shows after some finished requests."""

import urllib.request
from array import array

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from loadgen.errors import UsageError
from loadgen.records import ErrorInfo, RequestRecord
from loadgen.sinks.live import MAX_CATEGORIES, LiveMetrics

MS = 1_000_000


def _record(category="math", chunks=(1, 3, 2, 4), gap_ms=20, ttft_ms=50, error=None, warmup=False):
    r = RequestRecord(1, category, 0, prompt_tokens=100, max_tokens=10, scheduled_ns=1_000 * MS, warmup=warmup)
    r.sent_ns = r.scheduled_ns
    r.first_ns = r.scheduled_ns + ttft_ms * MS
    r.chunk_ns = array("q", [r.first_ns + i * gap_ms * MS for i in range(len(chunks))])
    r.chunk_tokens = array("i", chunks)
    r.last_ns = r.end_ns = r.chunk_ns[-1] if chunks else r.first_ns
    r.output_tokens = sum(chunks)
    r.error = error
    return r


def _metrics(**kw) -> LiveMetrics:
    return LiveMetrics(run_id="r1", engine="vllm", model="m", workload="w", target_concurrency=8,
                       in_flight=lambda: 5, version="0") if not kw else LiveMetrics(**kw)


def _samples(metrics: LiveMetrics) -> dict:
    out = {}
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k not in ("run_id", "engine", "model",
                                                                                      "workload"))))] = s.value
    return out


def test_counters_histograms_and_gauges_after_requests():
    metrics = _metrics()
    metrics.observe(_record())
    metrics.observe(_record(chunks=(1, 1, 1), gap_ms=10))
    metrics.observe(_record(error=ErrorInfo("http_status", "HTTP 500", 500), chunks=()))
    metrics.observe(_record(warmup=True))  # left out, as in the report
    metrics.set_server_acceptance_length(2.5)
    s = _samples(metrics)
    cat = (("category", "math"),)
    assert s[("loadgen_requests_total", (("category", "math"), ("outcome", "ok")))] == 2
    assert s[("loadgen_requests_total", (("category", "math"), ("outcome", "error")))] == 1
    assert s[("loadgen_errors_total", (("category", "math"), ("kind", "http_status")))] == 1
    assert s[("loadgen_output_tokens_total", cat)] == 10 + 3
    assert s[("loadgen_input_tokens_total", cat)] == 300
    # 3 + 2 gaps of 20 and 10 ms; le is inclusive
    assert s[("loadgen_inter_chunk_seconds_count", cat)] == 5
    assert s[("loadgen_inter_chunk_seconds_bucket", cat + (("le", "0.01"),))] == 2
    assert s[("loadgen_inter_chunk_seconds_bucket", cat + (("le", "0.02"),))] == 5
    assert s[("loadgen_inter_chunk_seconds_sum", cat)] == pytest.approx(0.08)
    # tokens per step after the first chunk: [3, 2, 4] and [1, 1] -> AL = 11 / 5
    assert s[("loadgen_tokens_per_step_sum", cat)] / s[("loadgen_tokens_per_step_count", cat)] == pytest.approx(2.2)
    assert s[("loadgen_tokens_per_step_bucket", cat + (("le", "1.0"),))] == 2
    # the same AL by definition: pooled 11 / 5; per request (3 + 2 + 4) / 3 and 1, mean 2; specdec_bench
    # drops the one-token first and the last chunk: [3, 2] and [1] -> (2.5 + 1) / 2
    for definition, al in (("token_weighted", 2.2), ("per_request_mean", 2.0), ("specdec_bench", 1.75)):
        assert s[("loadgen_acceptance_length", cat + (("definition", definition),))] == pytest.approx(al)
    assert s[("loadgen_ttft_seconds_count", cat)] == 2 and s[("loadgen_ttft_seconds_sum", cat)] == pytest.approx(0.1)
    assert s[("loadgen_tpot_seconds_count", cat)] == 2
    assert s[("loadgen_inflight_requests", ())] == 5 and s[("loadgen_target_concurrency", ())] == 8
    assert s[("loadgen_server_acceptance_length", ())] == 2.5
    assert ("loadgen_run_info", (("endpoint", "completions"), ("token_counts", "usage"), ("version", "0"))) in s


def test_categories_are_bounded():
    metrics = _metrics()
    for i in range(MAX_CATEGORIES + 5):
        metrics.observe(_record(category=f"c{i}"))
    categories = {dict(k[1]).get("category") for k in _samples(metrics) if k[0] == "loadgen_requests_total"}
    assert len(categories) == MAX_CATEGORIES + 1 and "other" in categories


def test_serves_over_http_and_reports_a_busy_port():
    metrics = _metrics()
    url = metrics.serve("127.0.0.1:0")
    try:
        metrics.observe(_record())
        body = urllib.request.urlopen(url, timeout=5).read().decode()
        assert "loadgen_requests_total" in body and 'run_id="r1"' in body
        port = url.split(":")[2].split("/")[0]
        with pytest.raises(UsageError, match="cannot serve metrics on 127.0.0.1:.*--no-metrics"):
            _metrics().serve(f"127.0.0.1:{port}")
    finally:
        metrics.close()
