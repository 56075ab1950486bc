"""Prefix-cache hygiene: the hit rate the server measured over the window, the hit rate the run's
own prompts explain, and the warnings when the first is clearly above the second or when a prompt
was sent more than once.

A warm prefix cache skips prefill: TTFT shrinks and throughput grows (vLLM users reported +86 %
throughput from a warm cache), so a run that hits blocks cached by an earlier run or by other
traffic measures a server it will not see in production.

Expected hit rate: every request sent (warm-up first, then the measured window) could reuse the
longest prefix it shares with any prompt sent before it, capped at its length less one (the
engines recompute the last prompt token for its logits: vLLM's kv_cache_manager.py,
get_computed_blocks) and rounded down to the engine's block; expected = those tokens over the
measured prompt tokens. It is what an unbounded cache, cold at the start, would give, so a
measured rate above it is the cache's state before the run, not the workload. The sum does not
depend on the order the prompts went in (cached_tokens_of), so it is computed per distinct
prompt, not per request.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from loadgen.engines.prefix_cache import ServerPrefixCache
from loadgen.records import RequestRecord

from .report_types import PrefixCacheFigures
from .sampling import prompt_send_counts

__all__ = ["prefix_cache_figures", "cached_tokens_of", "WARM_CACHE_MARGIN"]

#: how far (as a share of prompt tokens) the measured hit rate may exceed the expected one before
#: the run warns: room for a server's own rounding, not for a warm cache
WARM_CACHE_MARGIN = 0.05


def cached_tokens_of(sent: Mapping[str, int], prompt_ids: Mapping[str, np.ndarray], block: int) -> int:
    """The tokens a cold, unbounded cache would have held for prompts sent SENT[id] times each,
    whatever their order: the blocks of all of them less the blocks a trie of them holds. In
    lexicographic order, a trie adds to each prompt's predecessor's path all but their longest
    common prefix, so the shared blocks are those common prefixes, each capped at its prompt's
    length less one; every repeat of a prompt shares all of it (less one token)."""
    distinct = sorted((prompt_ids[p] for p in sent), key=lambda ids: ids.astype(">u4").tobytes())
    total = 0
    for before, ids in zip(distinct, distinct[1:]):
        common = min(before.size, ids.size)
        differ = np.flatnonzero(before[:common] != ids[:common])
        shared = int(differ[0]) if differ.size else common
        total += min(shared, ids.size - 1) // block * block
    return total + sum((times - 1) * ((prompt_ids[p].size - 1) // block * block) for p, times in sent.items())


def prefix_cache_figures(records: Sequence[RequestRecord], prompt_ids: Mapping[str, np.ndarray],
                         server: ServerPrefixCache | None, *, block_size: int | None, isolation: str | None = None,
                         cache_off: bool = False, zero_omitted: bool = False) -> PrefixCacheFigures:
    """RECORDS: every request of the run, warm-up included, each naming its workload prompt
    (prompt_id, found in PROMPT_IDS). BLOCK_SIZE: the engine's cache block where known (else every
    shared token counts). ISOLATION: how the run kept its conversations apart (--cache-isolation's
    field, or --unique-prefix), if it did: each conversation then shares nothing but its own turns;
    CACHE_OFF: every request opted out of the cache (llama.cpp's cache_prompt false), not even those.
    ZERO_OMITTED: the engine's usage says nothing where nothing was cached, so once one request of
    the run said how many, every completed one that did not had none."""
    sent = sorted((r for r in records if r.sent_ns), key=lambda r: (not r.warmup, r.sent_ns))
    measured = [r for r in sent if not r.warmup]
    block = block_size or 1
    expected = _expected_hit_rate(sent, prompt_ids, block, isolated=isolation is not None, cache_off=cache_off)
    reported = [r for r in measured if r.cached_tokens is not None]
    if zero_omitted and reported:
        reported = [r for r in measured if r.cached_tokens is not None or r.ok]
    reported_prompt = sum(r.prompt_tokens for r in reported)
    reported_cached = sum(r.cached_tokens or 0 for r in reported)
    if server is not None and server.exact and server.hit_rate is not None:
        hit_rate, source = server.hit_rate, f"{server.source}: exact over the window, all traffic on the server"
    elif reported_prompt:
        hit_rate, source = reported_cached / reported_prompt, "per-request usage (cached_tokens)"
    elif server is not None and server.hit_rate is not None:
        hit_rate, source = server.hit_rate, f"{server.source}, read as the window ended"
    else:
        hit_rate, source = None, None
    warmup_repeats, repeats = _repeats(sent)
    figures = PrefixCacheFigures(
        hit_rate=hit_rate, source=source,
        server_hits=server.hits if server else None, server_queries=server.queries if server else None,
        requests_reporting_cached_tokens=len(reported), cached_tokens=reported_cached if reported else None,
        expected_hit_rate=expected, block_size=block,
        block_size_source="the server's" if block_size else "unknown: every shared token counts",
        isolation=isolation,
        repeated_prompts=repeats, warmup_prompts_measured=warmup_repeats, warnings=[])
    return dataclasses.replace(figures, warnings=_warnings(figures))


def _expected_hit_rate(sent: Sequence[RequestRecord], prompt_ids: Mapping[str, np.ndarray], block: int, *,
                       isolated: bool, cache_off: bool) -> float | None:
    """Expected cached / prompt tokens of the measured requests (None: none measured). A first turn
    is its workload prompt; a later turn extends its conversation's previous turn (the latest one
    sent before it with its prompt_id) by that turn's reply, and an engine that caches generated
    tokens (vLLM's blocks, llama.cpp's slot) holds both: the expected hit counts both, an upper
    bound where the reply is re-tokenized differently, as the warning needs. Isolated first turns
    (a salt or prefix per conversation) share nothing; with the cache off no request does."""
    measured_tokens = sum(r.prompt_tokens for r in sent if not r.warmup)
    if not measured_tokens:
        return None
    if cache_off:
        return 0.0
    expected = 0
    if not isolated:
        first_turns = [r for r in sent if r.turn == 0 and r.prompt_id in prompt_ids]
        warmup = Counter(r.prompt_id for r in first_turns if r.warmup)
        everything = Counter(r.prompt_id for r in first_turns)
        expected = cached_tokens_of(everything, prompt_ids, block) - cached_tokens_of(warmup, prompt_ids, block)
    previous: dict[tuple[str, int], RequestRecord] = {}
    for r in sent:
        earlier = previous.get((r.prompt_id, r.turn - 1)) if r.turn else None
        if earlier is not None and not r.warmup:
            expected += min(earlier.prompt_tokens + earlier.output_tokens, r.prompt_tokens - 1) // block * block
        previous[(r.prompt_id, r.turn)] = r
    return expected / measured_tokens


def _repeats(sent: Sequence[RequestRecord]) -> tuple[int, int]:
    """(measured first turns whose prompt the warm-up sent, measured first turns whose prompt an
    earlier measured request sent)."""
    warmup = {r.prompt_id for r in sent if r.warmup and r.turn == 0 and r.prompt_id}
    counts = prompt_send_counts(sent)
    return (sum(n for p, n in counts.items() if p in warmup),
            sum(n - 1 for p, n in counts.items() if p not in warmup))


def _warnings(f: PrefixCacheFigures) -> list[str]:
    out = []
    if f.hit_rate is not None and f.expected_hit_rate is not None \
            and f.hit_rate > f.expected_hit_rate + WARM_CACHE_MARGIN:
        out.append(f"prefix-cache hit rate {f.hit_rate:.1%} is above the {f.expected_hit_rate:.1%} this run's shared "
                   "prefixes explain: the server's cache was warm (an earlier run, the warm-up, or other traffic), "
                   "so TTFT is short and throughput high; restart the server, or use --cache-isolation "
                   "(--unique-prefix where the engine has none)")
    if f.repeated_prompts or f.warmup_prompts_measured:
        parts = [f"{n} {what}" for n, what in ((f.repeated_prompts, "measured requests repeat an earlier measured "
                                                "prompt (-n above the workload's size cycles it)"),
                                               (f.warmup_prompts_measured, "repeat a warm-up prompt"))
                 if n]
        kept = (" (--cache-isolation/--unique-prefix keeps them from the cache)" if f.isolation else
                ": their prefill may come from the prefix cache")
        out.append(f"the same prompt was sent more than once: {'; '.join(parts)}{kept}")
    return out
