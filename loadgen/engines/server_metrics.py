"""Server-side acceptance, collected around and during the measured window.

Each engine exposes speculative-decoding figures differently (ENGINES.md), so each adapter names
a collector; all collectors answer with the same ServerAcceptance:

- CounterCollector: cumulative Prometheus counters (vLLM, llama.cpp, TRT-LLM's /prometheus/metrics),
  read before and after; AL = 1 + Δaccepted / Δdrafts, exact over the window (for all traffic).
- SglangCollector: /server_info's cumulative average before/after plus the windowed gauges sampled
  during the run; neither gives the window's exact AL (see its docstring).
- TrtllmIterationCollector: TRT-LLM's JSON /metrics returns only the iterations since the previous
  read, so one collector drains it for the whole run and sums specDecodingStats.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import orjson

from .base import SpecCounters
from .prometheus_text import sample_sums

__all__ = ["ServerAcceptance", "ServerCollector", "CounterCollector", "SglangCollector",
           "TrtllmIterationCollector", "Getter"]

Getter = Callable[[str], Awaitable[tuple[int, bytes]]]


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


async def _text(get: Getter, path: str) -> str | None:
    """A metrics body, or None when the endpoint is missing or failing (the run goes on)."""
    try:
        status, body = await get(path)
    except Exception:  # a scrape failure must never end a benchmark
        return None
    return body.decode("utf-8", "replace") if status == 200 else None


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


class CounterCollector:
    """Cumulative counters: exact over the window; sampled during it for a time series."""

    def __init__(self, path: str, parse: Callable[[str], SpecCounters | None], source: str) -> None:
        self.path, self._parse, self.source = path, parse, source
        self._before: SpecCounters | None = None
        self._last: SpecCounters | None = None
        self.series: list[dict] = []
        self._missing: str | None = None

    async def _read(self, get: Getter) -> SpecCounters | None:
        text = await _text(get, self.path)
        if text is None:
            self._missing = f"{self.path} could not be read"
            return None
        counters = self._parse(text)
        if counters is None:
            self._missing = f"{self.path} has no speculative-decoding counters (no speculation configured?)"
        return counters

    async def begin(self, get: Getter) -> None:
        self._before = self._last = await self._read(get)

    async def poll(self, get: Getter, t_s: float) -> None:
        now = await self._read(get)
        if now is not None and self._last is not None:
            step = window_acceptance(self._last, now, self.source)
            self.series.append({"t_s": round(t_s, 3), "acceptance_length": step.acceptance_length if step else None,
                                 "drafts": step.drafts if step else 0.0})
            self._last = now

    async def end(self, get: Getter) -> ServerAcceptance | None:
        after = await self._read(get)
        if self._before is None or after is None:
            return ServerAcceptance(self.source, None, exact=False, note=self._missing) if self._missing else None
        result = window_acceptance(self._before, after, self.source)
        if result is None:
            return ServerAcceptance(self.source, None, note="no drafts during the run", raw={"after": after.to_json()})
        result.time_series = self.series
        return result


class SglangCollector:
    """SGLang has no spec-decode counters. /server_info gives avg_spec_accept_length, a cumulative
    average since the server started; its gauges sglang:spec_accept_length/_rate cover only recent
    decode batches. So: the server AL reported is the mean of the gauge sampled during the run
    (windowed, weighted by sample not by step), and the cumulative averages before/after are shown
    beside it; neither is the window's exact AL, and both include other traffic."""

    source = "sglang gauges (windowed) + /server_info (cumulative)"

    def __init__(self) -> None:
        self.series: list[dict] = []
        self._info_before: float | None = None

    @staticmethod
    async def _avg_accept(get: Getter) -> float | None:
        text = await _text(get, "/server_info")
        if text is None:
            return None
        try:
            info = orjson.loads(text)
        except orjson.JSONDecodeError:
            return None
        states = info.get("internal_states") or [info]
        values = [s.get("avg_spec_accept_length") for s in states if isinstance(s, dict)]
        values = [v for v in values if isinstance(v, (int, float))]
        return sum(values) / len(values) if values else None

    async def begin(self, get: Getter) -> None:
        self._info_before = await self._avg_accept(get)

    async def poll(self, get: Getter, t_s: float) -> None:
        text = await _text(get, "/metrics")
        if text is None:
            return
        sums = sample_sums(text, {"sglang:spec_accept_length", "sglang:spec_accept_rate"}, by_label="tp_rank")
        length = sums.get("sglang:spec_accept_length", {})
        rate = sums.get("sglang:spec_accept_rate", {})
        if length:
            self.series.append({"t_s": round(t_s, 3), "acceptance_length": sum(length.values()) / len(length),
                                 "acceptance_rate": sum(rate.values()) / len(rate) if rate else None})

    async def end(self, get: Getter) -> ServerAcceptance | None:
        await self.poll(get, float("nan"))
        info_after = await self._avg_accept(get)
        samples = [s["acceptance_length"] for s in self.series if s["acceptance_length"]]
        rates = [s["acceptance_rate"] for s in self.series if s.get("acceptance_rate") is not None]
        if not samples and info_after is None:
            return None
        return ServerAcceptance(
            self.source, sum(samples) / len(samples) if samples else None,
            acceptance_rate=sum(rates) / len(rates) if rates else None, exact=False,
            note="SGLang exports no counters: AL is the mean of the windowed sglang:spec_accept_length gauge "
                 "sampled during the run (start SGLang with --enable-metrics); /server_info's averages are "
                 "cumulative since the server started",
            time_series=[s for s in self.series if s["t_s"] == s["t_s"]],
            raw={"server_info_avg_accept_length_before": self._info_before,
                 "server_info_avg_accept_length_after": info_after})


class TrtllmIterationCollector:
    """TRT-LLM's JSON /metrics drains on every read (two scrapers steal each other's iterations),
    so this one reads it for the whole run: the first read discards what came before, each poll
    adds its iterations' specDecodingStats, the last read closes the window.
    AL = (accepted + requests with drafts) / requests with drafts, summed over iterations."""

    source = "trtllm /metrics iteration stats"
    #: TRT-LLM keeps at most iter_stats_max_iterations (default 1000) between reads and drops the
    #: oldest: at 0.2 s, iterations would have to be shorter than 0.2 ms to be lost
    poll_interval_s = 0.2

    def __init__(self) -> None:
        self._drafts = self._draft_tokens = self._accepted = 0.0
        self._iterations = 0
        self._last_iter: int | None = None
        self._lost = 0  # iterations the engine dropped before they were read (gaps in "iter")
        self.series: list[dict] = []
        self._readable = True

    async def _drain(self, get: Getter) -> tuple[float, float, float] | None:
        text = await _text(get, "/metrics")
        try:
            entries = orjson.loads(text) if text is not None else None
        except orjson.JSONDecodeError:
            entries = None
        if not isinstance(entries, list):
            self._readable = False
            return None
        drafts = draft_tokens = accepted = 0.0
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            number = entry.get("iter")
            if isinstance(number, int):
                if self._last_iter is not None and number > self._last_iter + 1:
                    self._lost += number - self._last_iter - 1
                self._last_iter = number
            spec = entry.get("specDecodingStats")
            if spec:
                drafts += spec.get("numRequestsWithDraftTokens", 0)
                draft_tokens += spec.get("numDraftTokens", 0)
                accepted += spec.get("numAcceptedTokens", 0)
        self._iterations += len(entries)
        return drafts, draft_tokens, accepted

    async def begin(self, get: Getter) -> None:
        await self._drain(get)  # iterations before the window are not ours
        self._iterations = self._lost = 0

    async def poll(self, get: Getter, t_s: float) -> None:
        got = await self._drain(get)
        if got is None:
            return
        drafts, draft_tokens, accepted = got
        self._drafts += drafts
        self._draft_tokens += draft_tokens
        self._accepted += accepted
        self.series.append({"t_s": round(t_s, 3), "acceptance_length": 1 + accepted / drafts if drafts else None,
                             "drafts": drafts})

    async def end(self, get: Getter) -> ServerAcceptance | None:
        await self.poll(get, float("nan"))
        if not self._readable and not self._drafts:
            return ServerAcceptance(self.source, None, exact=False,
                                    note="/metrics gave no iteration stats (start trtllm-serve with "
                                         "enable_iter_perf_stats: true)")
        if not self._drafts:
            return None
        note = "iteration stats carry no per-position acceptance; /prometheus/metrics does where enabled"
        if self._lost:
            note += (f"; {self._lost} of {self._iterations + self._lost} iterations were dropped by the engine before "
                     "they were read (its queue holds iter_stats_max_iterations): the counts miss them")
        return ServerAcceptance(
            self.source, 1.0 + self._accepted / self._drafts, drafts=self._drafts, draft_tokens=self._draft_tokens,
            accepted_tokens=self._accepted,
            acceptance_rate=self._accepted / self._draft_tokens if self._draft_tokens else None,
            exact=not self._lost, note=note, time_series=[s for s in self.series if s["t_s"] == s["t_s"]],
            raw={"iterations": self._iterations, "iterations_lost": self._lost})
