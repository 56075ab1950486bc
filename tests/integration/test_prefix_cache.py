"""Prefix-cache hygiene end to end against `loadgen emulate --prefix-cache` over loopback: the
emulator's cache is the truth, and its workload is built so that the expected hits are known."""

import pytest

from loadgen.config import EmulatorSettings
from loadgen.records import read_journal

from ..shared_prefixes import shared_prefix_workload
from .test_bad_input import assert_one_line_error, loadgen

#: 4 prompts of 60 ids: the first 40 shared by all, the last 20 each its own
SHARED, OWN = 40, 20
#: each prompt sent 3 times (round robin), one at a time
SENT = 12


def expected_rate(block: int) -> float:
    """Per distinct prompt after the first: the shared 40 rounded down to the block; per repeat all
    but the last token, rounded down; over every prompt token sent."""
    size = SHARED + OWN
    distinct = 3 * (SHARED // block * block)
    repeats = (SENT - 4) * ((size - 1) // block * block)
    return (distinct + repeats) / (SENT * size)


@pytest.fixture
def workload(tmp_path):
    return shared_prefix_workload(tmp_path, shared=SHARED, own=OWN)


def run_against(run_loadgen, url, workload, out, **kwargs):
    return run_loadgen(url=url, workload="jsonl", workload_path=workload, num_requests=SENT, concurrency=1, warmup=0,
                       max_tokens=4, output_dir=out, **kwargs)


@pytest.mark.parametrize(("engine", "block", "source"), [
    ("vllm", 16, "vllm /metrics counters"),
    ("llamacpp", 1, "llamacpp /metrics counters"),
    ("sglang", 1, "per-request usage"),
])
def test_measured_hit_rate_is_the_emulators_and_a_warm_cache_warns(emulator, run_loadgen, workload, tmp_path,
                                                                  engine, block, source):
    emu = emulator("--engine", engine, "--prefix-cache", "--ttft-ms", "5", "--step-ms", "2", "--accept", "")
    cold, text = run_against(run_loadgen, emu.url, workload, tmp_path / "cold")
    figures = cold["prefix_cache"]
    assert figures["source"].startswith(source)
    assert figures["block_size"] == block
    assert figures["expected_hit_rate"] == pytest.approx(expected_rate(block))
    # The emulator's cache, counted its way. The run's preflight sent the first prompt's first id alone
    # (run/handshake.py) just before: a cache of 1-token blocks holds it, so the first prompt hits 1 token.
    truth = round(expected_rate(block) * SENT * (SHARED + OWN)) + (block == 1)
    assert figures["hit_rate"] == pytest.approx(truth / (SENT * (SHARED + OWN)))
    records = list(read_journal(tmp_path / "cold" / "requests.jsonl"))
    assert sum(r.cached_tokens or 0 for r in records) == truth  # per request, from each stream's usage
    assert figures["repeated_prompts"] == SENT - 4
    assert not any("was warm" in w for w in figures["warnings"])
    assert any("sent more than once" in w for w in figures["warnings"])
    assert "Prefix cache: hit rate" in text
    # The same prompts again, the cache warm from the first run: every prompt is a repeat.
    warm, text = run_against(run_loadgen, emu.url, workload, tmp_path / "warm")
    figures = warm["prefix_cache"]
    assert figures["hit_rate"] == pytest.approx((SHARED + OWN - 1) // block * block / (SHARED + OWN))
    assert figures["hit_rate"] > figures["expected_hit_rate"] + 0.05
    assert any("was warm" in w for w in figures["warnings"])
    assert "was warm" in text


@pytest.mark.parametrize(("engine", "isolation"), [("vllm", "cache_salt per conversation"),
                                                   ("llamacpp", "cache_prompt: false"),
                                                   ("sglang", "cache_salt per conversation")])
def test_cache_isolation_leaves_nothing_to_hit(emulator, run_loadgen, workload, tmp_path, engine, isolation):
    emu = emulator("--engine", engine, "--prefix-cache", "--ttft-ms", "5", "--step-ms", "2", "--accept", "")
    run_against(run_loadgen, emu.url, workload, tmp_path / "first")  # a warm cache: isolation must not hit it
    report, _ = run_against(run_loadgen, emu.url, workload, tmp_path / "isolated", cache_isolation=True)
    figures = report["prefix_cache"]
    assert figures["isolation"] == isolation
    assert figures["hit_rate"] == 0 and figures["expected_hit_rate"] == 0
    assert not any("was warm" in w for w in figures["warnings"])


def test_unique_prefix_leaves_nothing_to_hit(emulator, run_loadgen, workload, tmp_path):
    emu = emulator("--engine", "vllm", "--prefix-cache", "--ttft-ms", "5", "--step-ms", "2", "--accept", "")
    report, _ = run_against(run_loadgen, emu.url, workload, tmp_path / "out", unique_prefix=True, plots=True)
    figures = report["prefix_cache"]
    assert figures["isolation"] == "unique prefix"
    assert "<h2>Prefix cache</h2>" in (tmp_path / "out" / "report.html").read_text()
    assert figures["hit_rate"] == 0 and figures["expected_hit_rate"] == 0
    records = list(read_journal(tmp_path / "out" / "requests.jsonl"))
    assert all(r.prompt_tokens > SHARED + OWN for r in records)  # each prompt carries its own prefix


def test_no_prefix_cache_counts_no_hits(emulator, run_loadgen, workload, tmp_path):
    """Without --prefix-cache the emulator caches nothing and names no block size: every shared token
    is expected to hit, none is measured; no warm-cache warning, the repeats still warned of."""
    emu = emulator("--engine", "vllm", "--ttft-ms", "5", "--step-ms", "2", "--accept", "")
    report, _ = run_against(run_loadgen, emu.url, workload, tmp_path / "out")
    figures = report["prefix_cache"]
    assert figures["hit_rate"] == 0 and figures["expected_hit_rate"] == pytest.approx(expected_rate(1))
    assert figures["block_size"] == 1 and figures["block_size_source"].startswith("unknown")
    assert [w for w in figures["warnings"] if "sent more than once" in w]


def test_cache_isolation_on_an_engine_without_one_is_one_line(emulator, tmp_path):
    emu = emulator("--engine", "trtllm", "--ttft-ms", "5", "--step-ms", "2", "--accept", "")
    proc = loadgen("run", "--url", emu.url, "-n", "2", "--cache-isolation", "--no-metrics", "--no-progress",
                   "--output-dir", str(tmp_path / "out"))
    assert_one_line_error(proc, "--cache-isolation", "trtllm", "--unique-prefix")


def test_the_built_in_emulator_takes_the_prefix_cache_flag(run_loadgen, workload, tmp_path):
    report, _ = run_loadgen(url=None, workload="jsonl", workload_path=workload, num_requests=SENT, concurrency=1,
                            warmup=0, max_tokens=4,
                            emulator=EmulatorSettings(ttft_ms=5, step_ms=2, accept=(), prefix_cache=True))
    assert report["config"]["emulator"][-1] == "--prefix-cache"
    assert report["prefix_cache"]["hit_rate"] == pytest.approx(expected_rate(16))
