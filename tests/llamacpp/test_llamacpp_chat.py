"""`loadgen run --endpoint chat` (and --prompt-format text) against the REAL llama-server, which
applies its own chat template (the model's, Llama-3.1): token counts against its counters, the
request's own draft statistics, and tokenization parity with the right and a wrong tokenizer."""

import io
import urllib.request

from rich.console import Console

from loadgen.config import RunConfig
from loadgen.records import read_journal
from loadgen.run import run

from .synthetic import assert_server_al, expected
from .test_llamacpp_run import RATES, metric

MAX_TOKENS = 32


def run_chat(server, out, tokenizer, **options) -> tuple[dict, str]:
    console = io.StringIO()
    report = run(RunConfig(url=server.url, output_dir=out, workload="sample", num_requests=24, concurrency=4,
                           max_tokens=MAX_TOKENS, tokenizer=tokenizer, progress=False, **options),
                 Console(file=console, width=200)).to_json()
    return report, console.getvalue()


def test_chat_counts_against_the_servers_counters(llama_server, llama_models, tmp_path):
    server = llama_server(spec_rates=",".join(map(str, RATES)), draft_n=3, parallel=4)
    report, _ = run_chat(server, tmp_path / "out", str(llama_models.tokenizer), endpoint="chat")
    summary = report["summary"]
    sent = summary["requests_sent"]
    assert summary["requests_completed"] == sent and summary["output_tokens"] == sent * MAX_TOKENS
    text = urllib.request.urlopen(server.url + "/metrics", timeout=10).read().decode()
    assert metric(text, "llamacpp:tokens_predicted_total") == sent * MAX_TOKENS + 2  # + the preflight's 2
    records = list(read_journal(tmp_path / "out" / "requests.jsonl"))
    for r in records:
        # every token placed in a chunk by its timings' predicted_n (none left to the final usage),
        # and the request's own timings: one step per decode step, as on /v1/completions
        assert sum(r.chunk_tokens) == r.output_tokens == MAX_TOKENS
        assert r.server_accepted_tokens is not None
        assert len(r.chunk_tokens) - 1 == r.output_tokens - 1 - r.server_accepted_tokens
        assert r.reasoning_tokens == 0 and r.first_answer_ns == r.first_ns
    spec = report["speculative"]
    raw = spec["server"]["raw"]
    accepted = raw["after"]["accepted_tokens"] - raw["before"]["accepted_tokens"]
    assert sum(r.server_accepted_tokens for r in records) == accepted
    assert_server_al(spec["server"], expected(RATES, MAX_TOKENS))
    chat = report["chat"]
    assert chat["token_counts"] == "usage" and chat["answer_tokens"] == sent * MAX_TOKENS
    parity = chat["parity"]  # the server's template and the tokenizer folder's are the same: equal counts
    assert parity["requests"] == sent and not parity["flagged"]
    assert parity["server_prompt_tokens"] == summary["input_tokens"]


def test_parity_flags_a_wrong_tokenizer(llama_server_shared, tmp_path):
    server = llama_server_shared(draft_n=0)
    report, console = run_chat(server, tmp_path / "out", None, endpoint="chat")  # the built-in Phi-3 tokenizer
    parity = report["chat"]["parity"]
    assert parity["flagged"] and parity["mismatched"] == parity["requests"] == report["summary"]["requests_sent"]
    assert parity["server_prompt_tokens"] != parity["local_prompt_tokens"]
    assert "wrong --tokenizer or chat template?" in console and parity["example"] in " ".join(console.split())


def test_text_prompts_count_as_the_server_does(llama_server_shared, llama_models, tmp_path):
    server = llama_server_shared(draft_n=0)
    report, console = run_chat(server, tmp_path / "out", str(llama_models.tokenizer), prompt_format="text")
    assert report["summary"]["requests_completed"] == report["summary"]["requests_sent"]
    parity = report["chat"]["parity"]  # the template's BOS left out: the server adds its own
    assert parity["requests"] == report["summary"]["requests_sent"] and not parity["flagged"], parity
    assert "Tokenization parity" not in console
