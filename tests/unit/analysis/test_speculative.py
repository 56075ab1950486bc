import math

import pytest

from loadgen.analysis import (
    build_report,
    conditional_acceptance,
    cross_check,
    distribution,
    draft_coverage,
    mean_from_histogram,
    request_acceptance_length,
    step_histogram,
)
from loadgen.analysis.speculative import per_request_check, request_decode_steps
from loadgen.config import RunConfig
from loadgen.engines import ServerAcceptance, SpecCounters, get_adapter
from loadgen.engines.server_metrics import window_acceptance
from loadgen.records import ErrorInfo, RequestRecord
from tests.records import streamed_record


def test_histogram_excludes_the_prefill_chunk():
    assert step_histogram([[1, 3, 2], [1, 3], [5]]) == {2: 1, 3: 2}


def test_mean_from_histogram():
    assert mean_from_histogram({3: 2, 2: 1}) == pytest.approx(8 / 3)
    assert mean_from_histogram({}) is None


def test_conditional_acceptance_is_ratio_of_at_least_counts():
    # steps: 1,1,2,3 -> >=1: 4, >=2: 2, >=3: 1
    assert conditional_acceptance({1: 2, 2: 1, 3: 1}) == {1: 1.0, 2: 0.5, 3: 0.5}
    assert conditional_acceptance({}) == {}


def test_conditional_acceptance_skips_gaps_without_dividing_by_zero():
    assert conditional_acceptance({4: 3}) == {1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0}


def test_request_acceptance_length():
    assert request_acceptance_length([1, 3, 4, 2]) == 3.0
    assert request_acceptance_length([1]) is None


def test_server_acceptance_counter_arithmetic():
    before = SpecCounters(drafts=5, draft_tokens=15, accepted_tokens=5, accepted_per_position=(3, 2))
    after = SpecCounters(drafts=15, draft_tokens=45, accepted_tokens=20, accepted_per_position=(11, 7, 2))
    got = window_acceptance(before, after, "test")
    assert got.acceptance_length == 2.5 and got.drafts == 10
    assert got.acceptance_rate == 0.5
    assert got.per_position == [0.8, 0.5, 0.2]
    assert got.raw["before"]["accepted_per_position"] == [3, 2]
    assert window_acceptance(before, before, "test") is None  # no drafts in the window


def test_cross_check_flags_disagreement_beyond_two_percent_with_a_cause():
    why = ("server", "because")
    agree = cross_check(2.50, ServerAcceptance("s", 2.46), why, None)
    assert not agree["flagged"] and agree["relative_difference"] > 0 and agree["authoritative"] == "server"
    merged = cross_check(3.2, ServerAcceptance("s", 2.5), why, 0.02)
    assert merged["flagged"] and "stream interval" in merged["likely_causes"][0]
    assert any("fell behind" in c for c in merged["likely_causes"])
    low = cross_check(2.0, ServerAcceptance("s", 2.5, exact=False), why, None)
    assert low["flagged"] and any("other traffic" in c for c in low["likely_causes"])
    assert any("windowed" in c for c in low["likely_causes"])
    assert cross_check(None, None, why, None)["flagged"] is False


def _streamed(request_id: int, tokens: list[int]) -> RequestRecord:
    """A successful request whose chunks carried `tokens`, 20 ms apart."""
    return streamed_record(request_id, tokens, scheduled_ns=10**12 + request_id * 10**8)


def _speculative(engine: str, records: list[RequestRecord], server: ServerAcceptance):
    public = RunConfig(url=None, output_dir="out", num_requests=len(records)).public() | {
        "run_id": "r", "engine": engine, "model": "m", "emulator": None, "workers": 1, "workload_info": {},
        "loadgen_version": "0", "started_at": "2025-01-01T00:00:00+00:00"}
    return build_report(config=public, records=records, adapter=get_adapter(engine), server=[server],
                        target_concurrency=4).speculative


def _undrafted_start_requests(drafted_pairs: int, cut_to: int) -> list[RequestRecord]:
    """4 requests: after the prefill token, 2 undrafted steps (one token each), then drafted steps
    of 4 and 3 tokens (AL 3.5); the last request's last step, 3 tokens on the server, was cut to
    `cut_to` by max_tokens."""
    records = [_streamed(i, [1, 1, 1, *[4, 3] * drafted_pairs]) for i in range(4)]
    records[3].chunk_tokens[-1] = cut_to
    return records


def test_draft_coverage_of_undrafted_first_steps_explains_the_gap():
    # 4 x (2 + 16) = 72 decode steps, 64 drafted with 160 accepted (AL 3.5); the stream delivered
    # 4 x 58 - 1 = 231 tokens, one accepted token discarded by max_tokens.
    server = ServerAcceptance("vllm /metrics counters", 3.5, drafts=64.0, draft_tokens=192.0, accepted_tokens=160.0)
    spec = _speculative("vllm", _undrafted_start_requests(8, cut_to=2), server)
    assert spec.client.steps == 72 and spec.client.acceptance_length == 231 / 72
    coverage = spec.coverage
    assert coverage is not None
    assert (coverage.decode_steps, coverage.decode_tokens) == (72, 231)
    assert (coverage.drafted_steps, coverage.undrafted_steps) == (64, 8)
    assert coverage.coverage == 64 / 72
    assert coverage.predicted_client_acceptance_length == (8 + 64 * 3.5) / 72
    assert coverage.discarded_accepted_tokens == 1
    # the relation, exactly: client AL = (U + D * AL_s - discarded) / (U + D)
    assert spec.client.acceptance_length == (8 + 64 * 3.5 - 1) / 72
    check = spec.cross_check
    assert check.flagged and check.relative_difference == pytest.approx(231 / 72 / 3.5 - 1)  # -8.3 %
    assert len(check.likely_causes) == 1
    assert check.likely_causes[0].startswith("steps with no draft: 64 of 72 decode steps drafted (coverage 88.9%)")


def test_draft_coverage_beyond_the_tolerance_keeps_the_guessed_causes():
    # 4 x (2 + 4) = 24 steps, 16 drafted with 40 accepted (AL 3.5); 4 x 16 - 2 = 62 tokens streamed:
    # the 2 discarded tokens are 3 % of the prediction, more than the tolerance
    server = ServerAcceptance("vllm /metrics counters", 3.5, drafts=16.0, draft_tokens=48.0, accepted_tokens=40.0)
    spec = _speculative("vllm", _undrafted_start_requests(2, cut_to=1), server)
    coverage = spec.coverage
    assert coverage is not None
    assert (coverage.decode_steps, coverage.decode_tokens, coverage.undrafted_steps) == (24, 62, 8)
    assert coverage.coverage == 16 / 24 and coverage.predicted_client_acceptance_length == 64 / 24
    assert coverage.discarded_accepted_tokens == 2
    assert any("other traffic" in c for c in spec.cross_check.likely_causes)
    assert any("first steps" in c for c in spec.cross_check.likely_causes)


def test_draft_coverage_only_from_exact_counters_of_drafted_steps():
    hist = {1: 4, 4: 6}
    counters = ServerAcceptance("s", 4.5, drafts=6.0, accepted_tokens=21.0)
    assert draft_coverage(hist, counters) == {  # the docstring's example
        "decode_steps": 10, "decode_tokens": 28, "drafted_steps": 6, "undrafted_steps": 4, "coverage": 0.6,
        "predicted_client_acceptance_length": 3.1, "discarded_accepted_tokens": 3}
    windowed = ServerAcceptance("s", 4.5, drafts=6.0, accepted_tokens=21.0, exact=False)
    assert draft_coverage(hist, windowed) is None
    shared = ServerAcceptance("s", 4.5, drafts=11.0, accepted_tokens=38.5)  # more drafts than the client's steps
    assert draft_coverage(hist, shared) is None
    assert draft_coverage(hist, None) is None and draft_coverage({}, counters) is None
    more_than_counted = ServerAcceptance("s", 2.0, drafts=6.0, accepted_tokens=6.0)  # 22 drafted tokens streamed
    assert draft_coverage(hist, more_than_counted)["discarded_accepted_tokens"] is None
    # SGLang's drafts are not steps: no coverage, whatever its figures
    sglang = ServerAcceptance("sglang", 3.5, drafts=64.0, accepted_tokens=160.0)
    assert _speculative("sglang", _undrafted_start_requests(8, cut_to=2), sglang).coverage is None


def test_spec_counter_difference_pads_missing_positions():
    later = SpecCounters(10, 30, 15, (8, 5, 2))
    earlier = SpecCounters(4, 12, 6, (3, 3))
    assert later.minus(earlier) == SpecCounters(6, 18, 9, (5, 2, 2))


def test_distribution():
    d = distribution([1, 2, 3, 4])
    assert d["count"] == 4 and d["mean"] == 2.5 and d["p50"] == 2.5 and d["p25"] == 1.75
    assert d["min"] == 1 and d["max"] == 4 and math.isclose(d["std"], math.sqrt(1.25))
    empty = distribution([])
    assert empty["count"] == 0 and empty["p99"] is None


def test_request_decode_steps_from_the_engines_count_or_its_accepted_drafts():
    r = streamed_record(1, [1, 3, 3, 2], scheduled_ns=0)  # 9 tokens, 3 decode chunks
    assert request_decode_steps(r) is None  # the engine said nothing
    r.server_accepted_tokens = 5
    assert request_decode_steps(r) == (3, 3)  # 9 - 1 - 5 decode steps (llama.cpp's timings)
    r.server_steps = 4
    assert request_decode_steps(r) == (3, 4)  # the engine's own count wins (vLLM num_spec_steps)
    r.stream_steps = 5
    assert request_decode_steps(r) == (4, 4)  # a one-chunk-per-token stream: its bursts less the prefill


def test_per_request_check_counts_agreement_and_lists_the_largest_disagreements():
    records = [streamed_record(i, [1, 2, 2, 2], scheduled_ns=0, category="c") for i in range(4)]
    for r, steps in zip(records, (3, 3, 6, 2)):
        r.server_steps = steps
    failed = streamed_record(9, [], scheduled_ns=0, error=ErrorInfo("timeout", "x"))
    failed.server_steps = 1
    check = per_request_check([*records, failed], (True, "engine figures"))
    assert (check["requests_checked"], check["requests_agreeing"]) == (4, 2)
    assert [d["request_id"] for d in check["largest_disagreements"]] == [2, 3]  # |3 - 6| before |3 - 2|
    assert check["largest_disagreements"][0] == {"request_id": 2, "category": "c", "client_decode_steps": 3,
                                                 "engine_decode_steps": 6}
    assert check["likely_causes"][0].startswith("1 request(s) with fewer steps on the stream: chunks merged")
    assert check["likely_causes"][1].startswith("1 request(s) with more steps on the stream (0 with at least as "
                                                "many one-token chunks")  # [1, 2, 2, 2]: no one-token step
    absent = per_request_check(records, (False, "not given by sglang 0.5.9"))
    assert absent["given"] is False and absent["requests_checked"] == 0 and absent["source"].startswith("not given")


def test_per_request_check_counts_extra_steps_that_one_token_chunks_can_explain():
    """vLLM's num_spec_steps leaves out steps that drafted nothing (an n-gram drafter's first ones):
    they stream one token each, so a request with as many one-token chunks as extra steps is told apart."""
    ngram = streamed_record(1, [1, 1, 1, 4, 4], scheduled_ns=0)  # 2 undrafted steps, then 2 verify steps
    ngram.server_steps = 2
    split = streamed_record(2, [1, 2, 2, 3], scheduled_ns=0)  # 3 chunks for the engine's 2 steps, none of one token
    split.server_steps = 2
    check = per_request_check([ngram, split], (True, "vllm"))
    assert check["requests_agreeing"] == 0
    assert len(check["likely_causes"]) == 1
    assert check["likely_causes"][0].startswith("2 request(s) with more steps on the stream (1 with at least as many")
