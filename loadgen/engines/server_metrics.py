"""Server-side acceptance, collected around and during the measured window.

Each engine exposes speculative-decoding figures differently (ENGINES.md), so each adapter names
its collectors; all answer with the same ServerAcceptance. This module holds what is shared: the
protocol, and CounterCollector for cumulative Prometheus counters (vLLM, llama.cpp, TRT-LLM's
/prometheus/metrics), read before and after; AL = 1 + Δaccepted / Δdrafts, exact over the window
(for all traffic). Collectors for one engine's own endpoints live in its module (sglang.py:
gauges and /server_info; trtllm.py: the draining JSON iteration stats).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import orjson

from .base import Finding, SpecCounters

__all__ = ["ServerAcceptance", "ServerCollector", "CounterCollector", "Getter", "fetch_text", "fetch_json",
           "window_acceptance", "settled_read",
           "SPECULATIVE_CHECK", "EXACT_SERVER_AL", "NO_SERVER_AL", "counter_finding"]

Getter = Callable[[str], Awaitable[tuple[int, bytes]]]
T = TypeVar("T")


@dataclass
class ServerAcceptance:
    source: str
    acceptance_length: float | None
    drafts: float | None = None
    draft_tokens: float | None = None
    accepted_tokens: float | None = None
    acceptance_rate: float | None = None
    per_position: list[float] | None = None
    exact: bool = True  # False where the engine only gives windowed or cumulative averages
    note: str | None = None
    time_series: list[dict] = field(default_factory=list)
    raw: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return dict(self.__dict__)


class ServerCollector(Protocol):
    async def begin(self, get: Getter) -> None: ...
    async def poll(self, get: Getter, t_s: float) -> None: ...
    async def end(self, get: Getter) -> ServerAcceptance | None: ...


async def fetch_text(get: Getter, path: str) -> str | None:
    """A metrics body, or None when the endpoint is missing or failing (the run goes on)."""
    try:
        status, body = await get(path)
    except Exception:  # a scrape failure must never end a benchmark
        return None
    return body.decode("utf-8", "replace") if status == 200 else None


async def fetch_json(get: Getter, path: str) -> object:
    """A JSON body (SGLang's /server_info, TRT-LLM's iteration stats, a version endpoint), or None
    when the endpoint is missing, failing or not JSON; the caller checks its shape."""
    text = await fetch_text(get, path)
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


#: `loadgen probe`'s name for the speculative-metrics check, and the consequences it can have
SPECULATIVE_CHECK = "speculative metrics"
EXACT_SERVER_AL = "server AL will be exact over the window"
NO_SERVER_AL = "no server AL: the client's tokens per chunk are the only acceptance figure"


async def counter_finding(get: Getter, path: str, parse: Callable[[str], SpecCounters | None],
                          enable_hint: str) -> Finding:
    """What CounterCollector would find at PATH: cumulative counters make the window's AL exact.
    `enable_hint` says how to turn the endpoint on when it does not answer."""
    text = await fetch_text(get, path)
    if text is None:
        return Finding(SPECULATIVE_CHECK, f"{path} does not answer ({enable_hint})", NO_SERVER_AL, affects_figures=True)
    counters = parse(text)
    if counters is None:
        return Finding(SPECULATIVE_CHECK, f"{path} has no speculative-decoding counters (speculation off?)",
                       NO_SERVER_AL, affects_figures=True)
    positions = len(counters.accepted_per_position)
    per_position = f", accepted per position ({positions} positions)" if positions else ", no per-position counts"
    return Finding(SPECULATIVE_CHECK, f"{path} counts drafts, draft tokens, accepted tokens{per_position}; "
                                      f"{counters.drafts:g} drafts so far", EXACT_SERVER_AL)


def window_acceptance(before: SpecCounters, after: SpecCounters, source: str) -> ServerAcceptance | None:
    """AL = 1 + accepted / drafts over the window (the bonus token counts); per position i:
    accepted_at_i / drafts; acceptance rate = accepted / draft tokens."""
    delta = after.minus(before)
    if delta.drafts <= 0:
        return None
    return ServerAcceptance(
        source=source, acceptance_length=1.0 + delta.accepted_tokens / delta.drafts, drafts=delta.drafts,
        draft_tokens=delta.draft_tokens, accepted_tokens=delta.accepted_tokens,
        acceptance_rate=delta.accepted_tokens / delta.draft_tokens if delta.draft_tokens else None,
        per_position=[n / delta.drafts for n in delta.accepted_per_position] or None,
        raw={"before": before.to_json(), "after": after.to_json()})


#: An engine may count a step a moment after that step's chunk reached the client: vLLM's output
#: handler (vllm/v1/engine/async_llm.py, output_handler) hands a batch's outputs to the requests'
#: streams first and records its stats (logger_manager.record) after, so a scrape right after the
#: last chunk of the preflight, or of the run, could miss that step. The window's two reads
#: therefore read until two reads SETTLE_S apart agree, at most SETTLE_READS times.
SETTLE_S = 0.05
SETTLE_READS = 20


async def settled_read(read: Callable[[], Awaitable[T | None]]) -> T | None:
    """read() again until two reads SETTLE_S apart agree (at most SETTLE_READS more): the value
    the engine settles on once the steps just streamed are counted; None where a read fails."""
    value = await read()
    for _ in range(SETTLE_READS):
        if value is None:
            break
        await asyncio.sleep(SETTLE_S)
        again = await read()
        if again == value:
            break
        value = again
    return value


class CounterCollector:
    """Cumulative counters: exact over the window (its first and last reads settled: SETTLE_S);
    sampled during it for a time series."""

    def __init__(self, path: str, parse: Callable[[str], SpecCounters | None], source: str) -> None:
        self.path, self._parse, self.source = path, parse, source
        self._before: SpecCounters | None = None
        self._last: SpecCounters | None = None
        self.series: list[dict] = []
        self._missing: str | None = None

    async def _read(self, get: Getter) -> SpecCounters | None:
        text = await fetch_text(get, self.path)
        if text is None:
            self._missing = f"{self.path} could not be read"
            return None
        counters = self._parse(text)
        if counters is None:
            self._missing = f"{self.path} has no speculative-decoding counters (no speculation configured?)"
        return counters

    async def begin(self, get: Getter) -> None:
        self._before = self._last = await settled_read(lambda: self._read(get))

    async def poll(self, get: Getter, t_s: float) -> None:
        now = await self._read(get)
        if now is not None and self._last is not None:
            step = window_acceptance(self._last, now, self.source)
            self.series.append({"t_s": round(t_s, 3), "acceptance_length": step.acceptance_length if step else None,
                                 "drafts": step.drafts if step else 0.0})
            self._last = now

    async def end(self, get: Getter) -> ServerAcceptance | None:
        after = await settled_read(lambda: self._read(get))
        if self._before is None or after is None:
            return ServerAcceptance(self.source, None, exact=False, note=self._missing) if self._missing else None
        result = window_acceptance(self._before, after, self.source)
        if result is None:
            return ServerAcceptance(self.source, None, note="no drafts during the run", raw={"after": after.to_json()})
        result.time_series = self.series
        return result
