"""The run's summary on the console and its HTML page: the draft coverage beside both ALs."""

import io

import pytest
from rich.console import Console

from loadgen.analysis import build_report
from loadgen.config import RunConfig
from loadgen.engines import ServerAcceptance, get_adapter
from loadgen.sinks import print_summary
from loadgen.sinks.plots import render_run
from tests.records import streamed_record


def _report(bursts: int = 0):
    """4 vLLM requests: the prefill token, 2 undrafted steps, 8 drafted ones of 4 and 3 tokens; the
    first `bursts` of them delivered at one instant (every chunk stamped alike)."""
    records = [streamed_record(i, [1, 1, 1, *[4, 3] * 4], scheduled_ns=10**12 + i * 10**8,
                               step_ns=0 if i < bursts else 20_000_000) for i in range(4)]
    public = RunConfig(url=None, output_dir="out", num_requests=4).public() | {
        "run_id": "r", "engine": "vllm", "model": "m", "emulator": None, "workers": 1, "workload_info": {},
        "loadgen_version": "0", "started_at": "2025-01-01T00:00:00+00:00"}
    server = ServerAcceptance("vllm /metrics counters", 3.5, drafts=32.0, draft_tokens=96.0, accepted_tokens=80.0)
    return build_report(config=public, records=records, adapter=get_adapter("vllm"), server=[server],
                        target_concurrency=4)


def test_console_shows_the_draft_coverage_beside_both_acceptance_lengths():
    out = io.StringIO()
    print_summary(Console(file=out, width=400), _report())
    text = out.getvalue()
    # 40 decode steps, 32 drafted: client AL 120 / 40, predicted (8 + 32 * 3.5) / 40
    assert ("Draft coverage 80.0%: 32 of 40 decode steps drafted, 8 undrafted; client AL 3.000, server AL "
            "(drafted steps) 3.500, predicted from the coverage 3.000") in text
    assert "steps with no draft: 32 of 40 decode steps drafted (coverage 80.0%)" in text
    # each request [1, 1, 1, 4, 3, 4, 3, 4, 3, 4, 3]: 30 tokens over 10 steps whichever way they are
    # weighed; specdec_bench keeps [1, 1, 4, 3, 4, 3, 4, 3, 4], 27 / 9
    assert ("AL definitions: token-weighted (steps pooled) 3.000 · per-request mean 3.000 · specdec_bench 3.000 "
            "(4 requests, 40 steps)") in text
    # steps start at positions 1, 2, 3, 7 (bucket 0 of 8 tokens: 9 over 4), then two per bucket of 7 tokens
    assert "AL by output position (tokens): 0-8 2.25 · 8-16 3.50 · 16-24 3.50 · 24-32 3.50" in text
    assert "AL per request" in text and "AL pooled" in text and "AL specdec" in text


def test_html_page_shows_the_draft_coverage(tmp_path):
    html = render_run(_report(), tmp_path).read_text()
    assert "draft coverage (drafted / decode steps)" in html and "80.0% (32 / 40)" in html


def test_requests_delivered_in_one_burst_are_counted_and_left_out_of_tpot():
    """What a starved real vLLM did: a whole stream at one instant. TPOT is undefined for those."""
    report = _report(bursts=3)
    assert report.summary.requests_in_one_burst == 3
    assert report.latency.tpot_s.p50 == pytest.approx(20e-3 * 10 / 30)  # the one streamed: 10 gaps of 20 ms, 31 tokens
    out = io.StringIO()
    print_summary(Console(file=out, width=400), report)
    assert "3 of 4 requests delivered every token at one instant: their TPOT and user TPS are undefined" in \
        out.getvalue()
    assert _report().summary.requests_in_one_burst == 0
    assert "requests_in_one_burst" not in _report().to_json()["summary"]  # 0 is left out: earlier reports read alike
