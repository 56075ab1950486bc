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
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar

import orjson

from .base import Finding, SpecCounters
from .prometheus_text import Scrape, SpecMetricNames, first_counters, speculative_names

__all__ = ["ServerAcceptance", "ServerCollector", "CounterCollector", "Getter", "fetch_text", "fetch_json",
           "window_acceptance", "settled_read", "AcceptanceReading", "CounterRead", "ACCEPTANCE_READINGS",
           "SpecReading", "counter_reading", "best_reading", "readings_finding",
           "SPECULATIVE_CHECK", "EXACT_SERVER_AL", "NO_SERVER_AL", "NOT_READ_SERVER_AL", "NOT_PROMETHEUS"]

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
    #: what the source's endpoint gave for acceptance (ACCEPTANCE_READINGS); "not read" where it
    #: spoke of speculation in names loadgen does not know (then acceptance_length is None, never 0)
    reading: str | None = None
    #: those names (or JSON keys), for the user to report; empty where everything was read
    not_read: list[str] = field(default_factory=list)

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
NOT_READ_SERVER_AL = ("server AL not read (never taken as zero): the client's tokens per chunk are the only "
                      "acceptance figure; report these names to loadgen")

#: a metrics body the Prometheus parser refuses: nothing in it is read (a JSON body, an HTML error page)
NOT_PROMETHEUS = "not Prometheus text: nothing read"

AcceptanceReading = Literal["exact window", "windowed gauge", "cumulative", "absent", "not read"]
#: what an endpoint's body gives for acceptance, best first: counters read before and after the
#: window (exact), a gauge over recent batches sampled during it, an average since the server
#: started, nothing (speculation off, or metrics disabled), or speculative figures in a shape
#: loadgen does not know (a version that renamed them): shown as such, never as zero
ACCEPTANCE_READINGS: tuple[AcceptanceReading, ...] = ("exact window", "windowed gauge", "cumulative", "absent",
                                                      "not read")
CONSEQUENCES: dict[str, str] = {
    "exact window": EXACT_SERVER_AL,
    "windowed gauge": "server AL will be the mean of a gauge over recent batches, sampled during the run: not "
                      "exact over the window",
    "cumulative": "server AL will be cumulative since the server started, not the window's",
    "absent": NO_SERVER_AL,
    "not read": NOT_READ_SERVER_AL,
}


@dataclass(frozen=True)
class SpecReading:
    """What loadgen reads of speculative decoding in one body of one endpoint: the reading
    (ACCEPTANCE_READINGS), the shape it matched or what was found there (words), the names or keys
    read, and the speculative ones present that it does not read."""

    path: str
    acceptance: AcceptanceReading
    shape: str
    read: tuple[str, ...] = ()
    not_read: tuple[str, ...] = ()

    def describe(self) -> str:
        unread = f"; not read: {', '.join(self.not_read)}" if self.not_read else ""
        return f"{self.path}: {self.shape}{unread}"


def best_reading(readings: Iterable[SpecReading]) -> SpecReading:
    """The reading a run's server AL will come from: the best kind (exact before gauge before
    cumulative); "not read" before "absent", so a renamed figure is never passed over as missing."""
    order = {"exact window": 0, "windowed gauge": 1, "cumulative": 2, "not read": 3, "absent": 4}
    return min(readings, key=lambda r: order[r.acceptance])


def readings_finding(readings: Sequence[SpecReading]) -> Finding:
    """`loadgen probe` and a run's start: every endpoint's reading, and the consequence of the best."""
    best = best_reading(readings)
    consequence = CONSEQUENCES[best.acceptance]
    if best.acceptance == "not read":
        consequence = f"{consequence} ({', '.join(best.not_read)})"
    return Finding(SPECULATIVE_CHECK, "; ".join(r.describe() for r in readings), consequence,
                   affects_figures=best.acceptance != "exact window" or any(r.not_read for r in readings))


def counter_reading(text: str | None, path: str, shapes: Sequence[SpecMetricNames],
                    enable_hint: str) -> tuple[SpecReading, SpecCounters | None]:
    """What cumulative Prometheus counters at PATH give: exact over the window where one of the
    engine's known shapes (its versions' names) is complete; "not read" where speculative names
    are there but none of those shapes is (a rename); absent where none is. `enable_hint` says how
    to turn the endpoint on when it does not answer."""
    if text is None:
        return SpecReading(path, "absent", f"does not answer ({enable_hint})"), None
    try:
        scrape = Scrape(text)
    except ValueError:
        return SpecReading(path, "not read", NOT_PROMETHEUS), None
    present = speculative_names(scrape.names())
    known = set().union(*(shape.known() for shape in shapes))
    unknown = tuple(sorted(present - known))
    found = first_counters(scrape, shapes)
    if found is not None:
        shape, counters = found
        positions = len(counters.accepted_per_position)
        per_position = f", accepted per position ({positions} positions)" if positions else ", no per-position counts"
        return SpecReading(path, "exact window",
                           f"{shape.shape} counters: drafts, draft tokens, accepted tokens{per_position}; "
                           f"{counters.drafts:g} drafts so far", tuple(sorted(present & shape.known())),
                           unknown), counters
    if present:
        missing = {name for shape in shapes for name in shape.required() if present & shape.known()} - present
        why = f"incomplete (missing {', '.join(sorted(missing))})" if missing and not unknown else \
            "speculative metrics in names loadgen does not know"
        return SpecReading(path, "not read", why, (), tuple(sorted(present))), None
    return SpecReading(path, "absent", "no speculative-decoding counters (speculation off?)"), None


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


#: one body of a counters endpoint (None: it did not answer) -> its reading, and its counters where
#: the reading is an exact window (counter_reading with an engine's shapes; SGLang's own)
CounterRead = Callable[[str | None], tuple[SpecReading, SpecCounters | None]]


class CounterCollector:
    """Cumulative counters: exact over the window (its first and last reads settled: SETTLE_S);
    sampled during it for a time series. `read` turns one body into its reading and counters."""

    def __init__(self, path: str, read: CounterRead, source: str) -> None:
        self.path, self._read_body, self.source = path, read, source
        self._before: SpecCounters | None = None
        self._last: SpecCounters | None = None
        self.series: list[dict] = []
        self._reading: SpecReading | None = None

    async def _read(self, get: Getter) -> SpecCounters | None:
        reading, counters = self._read_body(await fetch_text(get, self.path))
        self._reading = reading
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
        reading = self._reading
        assert reading is not None, "end() reads the endpoint"
        if self._before is None or after is None:
            if reading.acceptance in ("windowed gauge", "cumulative"):
                return None  # another collector's figure (SGLang's gauges, before its counters)
            return ServerAcceptance(self.source, None, exact=False, note=reading.describe(),
                                    reading=reading.acceptance, not_read=list(reading.not_read))
        result = window_acceptance(self._before, after, self.source)
        if result is None:
            return ServerAcceptance(self.source, None, note="no drafts during the run", raw={"after": after.to_json()},
                                    reading=reading.acceptance, not_read=list(reading.not_read))
        result.time_series = self.series
        result.reading, result.not_read = reading.acceptance, list(reading.not_read)
        return result
