"""The server's own prefix-cache figures over a run's measured window, read at the engine's source.

Each adapter says what its engine exposes (`prefix_cache_reading`, parsing its Prometheus text):
vLLM and llama.cpp count cached prompt tokens in cumulative counters, exact over the window (for
all traffic on the server); SGLang has only a gauge, the hit rate of its recent prefill batches.
The engine's block size, where it tells it, rounds the hits the workload's shared prefixes explain
(analysis/prefix_cache.py). Per-request figures (usage cached_tokens, llama.cpp timings.cache_n)
come from each stream instead (records.RequestRecord.cached_tokens).
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import EngineAdapter
from .server_metrics import Getter, fetch_text, settled_read

__all__ = ["PrefixCacheReading", "ServerPrefixCache", "PrefixCacheWindow"]


@dataclass(frozen=True)
class PrefixCacheReading:
    """One scrape: cumulative prompt tokens looked up (queries) and found cached (hits) where the
    engine counts them; `hit_rate` where it gives only a rate (a gauge); its cache block in tokens
    where it says."""

    queries: float | None = None
    hits: float | None = None
    hit_rate: float | None = None
    block_size: int | None = None


@dataclass(frozen=True)
class ServerPrefixCache:
    """The window's server figure: `exact` for counters read before and after it (Δhits / Δqueries),
    not for a gauge read at its end."""

    source: str
    hit_rate: float | None
    exact: bool
    hits: float | None = None
    queries: float | None = None
    block_size: int | None = None


class PrefixCacheWindow:
    """Reads the engine's prefix-cache figures as the measured window begins and ends."""

    def __init__(self, adapter: EngineAdapter) -> None:
        self._adapter = adapter
        self._before: PrefixCacheReading | None = None

    async def _read(self, get: Getter) -> PrefixCacheReading | None:
        path = self._adapter.metrics_path
        text = await fetch_text(get, path) if path is not None else None
        return self._adapter.prefix_cache_reading(text) if text is not None else None

    async def begin(self, get: Getter) -> None:
        self._before = await settled_read(lambda: self._read(get))

    async def end(self, get: Getter) -> ServerPrefixCache | None:
        after = await settled_read(lambda: self._read(get))
        if after is None:
            return None
        before = self._before
        source = f"{self._adapter.name} {self._adapter.metrics_path}"
        if (before is not None and before.queries is not None and before.hits is not None
                and after.queries is not None and after.hits is not None):
            queries, hits = after.queries - before.queries, after.hits - before.hits
            return ServerPrefixCache(f"{source} counters", hits / queries if queries > 0 else None, True,
                                     hits=hits, queries=queries, block_size=after.block_size)
        if after.hit_rate is not None:
            return ServerPrefixCache(f"{source} gauge (recent prefill batches)", after.hit_rate, False,
                                     block_size=after.block_size)
        return None
