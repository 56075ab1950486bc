"""`loadgen run` against a REAL engine: llama-server with synthetic acceptance rates, so the truth
is known (--spec-synth-rates are UNCONDITIONAL per position: AL = 1 + sum of the rates)."""

import io
import re
import urllib.request

import pytest
from rich.console import Console

from loadgen.config import RunConfig
from loadgen.records import read_journal
from loadgen.run import run

from .synthetic import assert_server_al, expected

RATES = (0.8, 0.6, 0.4)
MAX_TOKENS = 32


def metric(text: str, name: str) -> float:
    return sum(float(v) for v in re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def run_against(server, llama_models, out, *, requests: int, concurrency: int) -> dict:
    """`loadgen run` of the sample workload (tokenized as the server's vocabulary) into `out`; the
    report as report.json holds it."""
    return run(RunConfig(url=server.url, output_dir=out, num_requests=requests, concurrency=concurrency,
                         max_tokens=MAX_TOKENS, tokenizer=str(llama_models.tokenizer), progress=False),
               Console(file=io.StringIO(), width=120)).to_json()


@pytest.mark.parametrize("concurrency, requests", [(1, 120), (4, 200)])
def test_server_acceptance_and_accounting_against_synthetic_rates(llama_server, llama_models, tmp_path,
                                                                   concurrency, requests):
    server = llama_server(spec_rates=",".join(map(str, RATES)), draft_n=3, parallel=4)
    out = tmp_path / "out"
    report = run_against(server, llama_models, out, requests=requests, concurrency=concurrency)
    assert report["config"]["engine"] == "llamacpp"  # detected from /v1/models
    summary = report["summary"]
    sent = summary["requests_sent"]  # the sample workload has two-turn conversations: >= requests
    assert sent >= requests and summary["requests_completed"] == sent and summary["requests_failed"] == 0
    assert summary["output_tokens"] == sent * MAX_TOKENS
    records = list(read_journal(out / "requests.jsonl"))
    assert len(records) == sent and all(r.output_tokens == MAX_TOKENS for r in records)

    text = urllib.request.urlopen(server.url + "/metrics", timeout=10).read().decode()
    # The preflight request (2 tokens) ran before the window: everything else is the run's.
    assert metric(text, "llamacpp:tokens_predicted_total") == sent * MAX_TOKENS + 2
    spec = report["speculative"]
    srv = spec["server"]
    assert srv["raw"]["after"]["drafts"] == metric(text, "llamacpp:spec_decode_num_drafts_total")
    assert srv["raw"]["after"]["accepted_tokens"] == metric(text, "llamacpp:spec_decode_num_accepted_tokens_total")
    drafts = srv["raw"]["after"]["drafts"] - srv["raw"]["before"]["drafts"]
    accepted = srv["raw"]["after"]["accepted_tokens"] - srv["raw"]["before"]["accepted_tokens"]
    assert drafts > 1000 and srv["acceptance_length"] == 1 + accepted / drafts
    # Against the configured truth, with the shortened drafts near max_tokens (synthetic.py).
    truth = expected(RATES, MAX_TOKENS)
    assert_server_al(srv, truth)
    assert len(srv["per_position"]) == len(RATES)
    for position, measured in enumerate(srv["per_position"]):
        assert abs(measured - truth.per_position[position]) <= truth.position_tolerance(position, drafts), (
            srv["per_position"], truth.per_position)
    # Each request's own timings add up to the counters' window.
    per_request = spec["server_per_request"]
    assert sum(c["draft_tokens"] for c in per_request.values()) == (srv["raw"]["after"]["draft_tokens"]
                                                                    - srv["raw"]["before"]["draft_tokens"])
    assert sum(c["accepted_tokens"] for c in per_request.values()) == accepted
    # Per request: the steps the stream's gaps show (its bursts) against the timings' N - 1 - accepted.
    # They differ where steps came quicker than the 2 ms gap that starts a burst (this small model's
    # steps take ~1-5 ms: 69 of 145 requests agreed at concurrency 1, 180 of 241 at 4), where a read
    # caught two steps, or where a burst had a gap above 2 ms inside it.
    per_request_check = spec["per_request_check"]
    agreeing = sum(1 for r in records if r.stream_steps - 1 == r.output_tokens - 1 - r.server_accepted_tokens)
    assert per_request_check["given"] and per_request_check["requests_checked"] == sent
    assert per_request_check["requests_agreeing"] == agreeing
    assert sum(c["requests_agreeing"] for c in per_request.values()) == agreeing
    # The client's steps per request are the timings' (N - accepted); its AL is below the server's
    # drafts-only figure by the last steps of each request, where no draft fits under max_tokens.
    check = spec["cross_check"]
    assert check["authoritative"] == "server"
    steps = sum(len(r.chunk_tokens) - 1 for r in records)
    assert steps == sum(r.output_tokens - 1 - r.server_accepted_tokens for r in records)
    assert check["client_acceptance_length"] == pytest.approx((sent * (MAX_TOKENS - 1)) / steps)
    assert 0 <= steps - drafts <= sent  # undrafted steps: here only a last one, with one token still allowed
    # The report's draft coverage says the same, and no accepted token was cut off: llama-server
    # shortens a draft to the tokens max_tokens still allows.
    coverage = spec["coverage"]
    assert (coverage["decode_steps"], coverage["drafted_steps"]) == (steps, drafts)
    assert coverage["undrafted_steps"] == steps - drafts and coverage["coverage"] == drafts / steps
    assert coverage["discarded_accepted_tokens"] == 0
    assert coverage["predicted_client_acceptance_length"] == pytest.approx(check["client_acceptance_length"])
    if check["flagged"]:  # the undrafted steps are the whole gap, and the cross-check says so
        assert len(check["likely_causes"]) == 1 and check["likely_causes"][0].startswith("steps with no draft:")
    assert check["relative_difference"] <= 0 and check["flagged"] == (check["relative_difference"] < -0.02)


def test_baseline_is_one_token_per_step_however_short_the_steps(llama_server, llama_models, tmp_path):
    server = llama_server(draft_n=0, parallel=4)  # steps of ~1-5 ms: shorter than any gap that could group them
    out = tmp_path / "out"
    report = run_against(server, llama_models, out, requests=40, concurrency=4)
    records = list(read_journal(out / "requests.jsonl"))
    assert records and all(r.ok and r.server_draft_tokens == 0 for r in records)  # timings carried no draft_n
    assert all(list(r.chunk_tokens) == [1] * MAX_TOKENS for r in records)
    assert report["speculative"]["client"]["acceptance_length"] == 1.0


@pytest.mark.parametrize("draft_n", [0, 3])
def test_client_steps_are_the_engines_decodes(llama_server, llama_models, tmp_path, draft_n):
    """One slot, one request at a time: every llama_decode of the target is one step the client
    counted (a prefill, or a verification), so n_decode_total checks the grouping independently."""
    server = llama_server(draft_n=draft_n, parallel=1)
    before = urllib.request.urlopen(server.url + "/metrics", timeout=10).read().decode()
    out = tmp_path / "out"
    run_against(server, llama_models, out, requests=30, concurrency=1)
    after = urllib.request.urlopen(server.url + "/metrics", timeout=10).read().decode()
    records = list(read_journal(out / "requests.jsonl"))
    decodes = metric(after, "llamacpp:n_decode_total") - metric(before, "llamacpp:n_decode_total")
    preflight = 2  # the preflight request before the window: 2 tokens, 2 decodes
    assert sum(len(r.chunk_tokens) for r in records) == decodes - preflight
