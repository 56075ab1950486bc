"""Prefix-cache figures against a REAL llama-server: its per-request cached tokens (usage
prompt_tokens_details.cached_tokens and timings.cache_n) and its counters
(llamacpp:prompt_tokens_cached_total, prompt_tokens_total) must tell the same story, and
cache_prompt false (--cache-isolation) must leave nothing cached; a fresh server's hit rate is
what the prompts share, a second run's is not, and that one is warned of."""

import io

from rich.console import Console

from loadgen.config import RunConfig
from loadgen.records import read_journal
from loadgen.run import run


def run_against(server, llama_models, out, **kwargs) -> dict:
    return run(RunConfig(url=server.url, output_dir=out, num_requests=8, warmup=4, concurrency=1, max_tokens=4,
                         tokenizer=str(llama_models.tokenizer), progress=False, plots=False, **kwargs),
               Console(file=io.StringIO(), width=120)).to_json()


def test_counters_and_per_request_cached_tokens_agree_and_isolation_caches_nothing(llama_server, llama_models,
                                                                                  tmp_path):
    server = llama_server(spec_rates=None, draft_n=0, parallel=1)
    report = run_against(server, llama_models, tmp_path / "cached")
    figures = report["prefix_cache"]
    records = [r for r in read_journal(tmp_path / "cached" / "requests.jsonl") if not r.warmup]
    assert figures["source"].startswith("llamacpp /metrics counters") and figures["block_size"] == 1
    assert all(r.cached_tokens is not None for r in records)
    # The window's counters are this run's requests alone (one client, warm-up before the window).
    assert figures["server_queries"] == sum(r.prompt_tokens for r in records)
    assert figures["server_hits"] == sum(r.cached_tokens or 0 for r in records) > 0
    assert figures["warmup_prompts_measured"] > 0  # the plan takes the warm-up's prompts again
    assert not [w for w in figures["warnings"] if "was warm" in w]  # a fresh server: what the prompts share
    isolated = run_against(server, llama_models, tmp_path / "isolated", cache_isolation=True)["prefix_cache"]
    assert isolated["isolation"] == "cache_prompt: false"
    assert isolated["server_hits"] == 0 and isolated["hit_rate"] == 0
    assert isolated["server_queries"] == figures["server_queries"]  # the same prompts, none of them reused
    # The same prompts once more, cached: llama-server keeps earlier prompts beyond its one slot, so
    # far more hits than the prompts share (93 % against 41 % when written), and the warning says so.
    again = run_against(server, llama_models, tmp_path / "again")["prefix_cache"]
    assert again["hit_rate"] > again["expected_hit_rate"] + 0.05
    assert [w for w in again["warnings"] if "was warm" in w]
