"""The expected prefix-cache hits of a run's prompts, and the figures and warnings built from them."""

import random

import numpy as np
import pytest

from loadgen.analysis.prefix_cache import cached_tokens_of, prefix_cache_figures
from loadgen.emulator.prefix_cache import PrefixCache
from loadgen.engines.prefix_cache import ServerPrefixCache
from loadgen.records import RequestRecord


def brute_force(order: list[list[int]], block: int) -> int:
    """Per prompt in send order: its longest common prefix with any earlier one, capped at its length
    less one, in whole blocks."""
    total = 0
    for i, ids in enumerate(order):
        best = 0
        for earlier in order[:i]:
            n = 0
            while n < min(len(ids), len(earlier)) and ids[n] == earlier[n]:
                n += 1
            best = max(best, n)
        total += min(best, len(ids) - 1) // block * block
    return total


@pytest.mark.parametrize("block", [1, 4, 16])
def test_expected_hits_match_the_per_request_definition(block):
    rng = random.Random(block)
    stems = [[rng.randrange(50) for _ in range(rng.randrange(0, 40))] for _ in range(4)]
    prompts = {f"p{i}": np.asarray(rng.choice(stems) + [rng.randrange(50) for _ in range(rng.randrange(1, 30))],
                                   dtype=np.int32) for i in range(12)}
    sent = [rng.choice(list(prompts)) for _ in range(30)]
    counts: dict[str, int] = {}
    for p in sent:
        counts[p] = counts.get(p, 0) + 1
    assert cached_tokens_of(counts, prompts, block) == brute_force([prompts[p].tolist() for p in sent], block)


@pytest.mark.parametrize("block", [1, 16])
def test_the_emulators_cache_hits_what_the_expected_count_expects(block):
    """A cold, large cache gives, per request, exactly the expected count's hits."""
    rng = random.Random(7)
    shared = [rng.randrange(1000) for _ in range(37)]
    prompts = [shared[:rng.randrange(38)] + [rng.randrange(1000) for _ in range(rng.randrange(1, 50))]
               for _ in range(20)]
    order = [rng.choice(prompts) for _ in range(60)]
    cache = PrefixCache(block)
    assert sum(cache.admit(ids) for ids in order) == brute_force(order, block)


def test_a_salt_or_eviction_keeps_a_prompt_from_hitting():
    cache = PrefixCache(4, capacity_blocks=3)
    ids = list(range(12))
    assert cache.admit(ids) == 0
    assert cache.admit(ids, "salt") == 0  # another salt: another first block (and the unsalted blocks evicted)
    assert cache.admit(ids, "salt") == 8  # its own salt again: all but the block of its last token
    cache.admit(list(range(100, 112)))
    assert cache.admit(ids, "salt") == 0  # evicted by the other prompt's blocks


def record(request_id: int, prompt_id: str, tokens: int, *, warmup: bool = False, turn: int = 0,
           cached: int | None = None, output: int = 4) -> RequestRecord:
    r = RequestRecord(request_id, "c", turn, tokens, 4, scheduled_ns=request_id, warmup=warmup, prompt_id=prompt_id,
                      cached_tokens=cached)
    r.sent_ns, r.output_tokens = 1000 + request_id, output
    return r


PROMPTS = {"a": np.arange(0, 64, dtype=np.int32), "b": np.concatenate([np.arange(0, 32), np.arange(500, 532)])}


def test_figures_from_counters_against_the_expected_rate_and_the_repeats():
    records = [record(0, "a", 64, warmup=True), record(1, "a", 64), record(2, "b", 64), record(3, "b", 64)]
    # a after its warm-up: 48 of 64 (16-token blocks, the last token never); b shares a's first 32; b again 48
    server = ServerPrefixCache("vllm /metrics counters", 128 / 192, True, hits=128, queries=192, block_size=16)
    figures = prefix_cache_figures(records, PROMPTS, server, block_size=16)
    assert figures.expected_hit_rate == pytest.approx((48 + 32 + 48) / 192)
    assert figures.hit_rate == pytest.approx(128 / 192) and figures.source.startswith("vllm /metrics counters")
    assert (figures.warmup_prompts_measured, figures.repeated_prompts) == (1, 1)
    assert len(figures.warnings) == 1 and "sent more than once" in figures.warnings[0]
    assert "1 measured requests repeat" in figures.warnings[0] and "1 repeat a warm-up prompt" in figures.warnings[0]


def test_a_rate_above_the_expected_one_warns_of_a_warm_cache():
    records = [record(1, "a", 64, cached=48), record(2, "b", 64, cached=48)]
    figures = prefix_cache_figures(records, PROMPTS, None, block_size=16)
    assert figures.source == "per-request usage (cached_tokens)" and figures.hit_rate == pytest.approx(96 / 128)
    assert figures.expected_hit_rate == pytest.approx(32 / 128)
    assert [w for w in figures.warnings if "was warm" in w]
    close = [record(1, "a", 64, cached=0), record(2, "b", 64, cached=32 + 4)]  # within the margin: no warning
    assert not prefix_cache_figures(close, PROMPTS, None, block_size=16).warnings


def test_later_turns_expect_their_previous_turn_and_its_reply():
    records = [record(1, "a", 64), record(2, "a", 100, turn=1)]
    figures = prefix_cache_figures(records, PROMPTS, None, block_size=16)
    assert figures.expected_hit_rate == pytest.approx((64 + 4) // 16 * 16 / 164)


def test_an_engine_that_leaves_zero_out_counts_the_silent_requests_as_none_cached():
    records = [record(1, "a", 64), record(2, "b", 64, cached=32)]
    alone = prefix_cache_figures(records, PROMPTS, None, block_size=1)
    assert alone.hit_rate == pytest.approx(0.5)  # only the request that said
    omitted = prefix_cache_figures(records, PROMPTS, None, block_size=1,
                                   zero_omitted=True)
    assert omitted.hit_rate == pytest.approx(32 / 128) and omitted.requests_reporting_cached_tokens == 2


def test_isolated_runs_expect_nothing_and_say_how():
    records = [record(1, "a", 64, cached=0), record(2, "a", 64, cached=0)]
    figures = prefix_cache_figures(records, PROMPTS, None, block_size=16, isolation="cache_salt per conversation")
    assert figures.expected_hit_rate == 0 and figures.isolation == "cache_salt per conversation"
    assert figures.warnings == ["the same prompt was sent more than once: 1 measured requests repeat an earlier "
                                "measured prompt (-n above the workload's size cycles it) (--cache-isolation/"
                                "--unique-prefix keeps them from the cache)"]


def test_isolated_conversations_still_share_their_own_turns_unless_the_cache_is_off():
    records = [record(1, "a", 64), record(2, "a", 100, turn=1), record(3, "a", 64), record(4, "b", 64)]
    own = prefix_cache_figures(records, PROMPTS, None, block_size=16, isolation="unique prefix")
    assert own.expected_hit_rate == pytest.approx(64 / 292)  # the later turn: its first turn and reply, whole blocks
    off = prefix_cache_figures(records, PROMPTS, None, block_size=16, isolation="cache_prompt: false", cache_off=True)
    assert off.expected_hit_rate == 0
