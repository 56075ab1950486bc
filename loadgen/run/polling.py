"""The server's own metrics over the measured phase: each engine collector is read once before
and once after it (the report's server figures), and sampled in between (its time series, and
the live server-AL gauge)."""

from __future__ import annotations

import asyncio
import time

from ..engines import EngineAdapter
from ..engines.prefix_cache import PrefixCacheWindow, ServerPrefixCache
from ..sinks import LiveMetrics
from ..transport import HttpClient

__all__ = ["ServerPolling", "SERVER_POLL_S"]

#: how often server metrics are sampled during the run
SERVER_POLL_S = 1.0


class ServerPolling:
    """`await begin()` just before the measured phase, `start()` as it starts, `await finish()` as
    it ends; `cancel()` in any case afterwards, so that no sampler outlives a run that failed."""

    def __init__(self, adapter: EngineAdapter, client: HttpClient, metrics: LiveMetrics | None) -> None:
        self._collectors = adapter.collectors()
        self._client, self._metrics = client, metrics
        self._prefix_cache = PrefixCacheWindow(adapter)
        #: the server's prefix-cache figure over the window, once finish() has read it (None: it has none)
        self.prefix_cache: ServerPrefixCache | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Future | None = None

    async def begin(self) -> None:
        """Every collector's starting values."""
        for collector in self._collectors:
            await collector.begin(self._client.get)
        await self._prefix_cache.begin(self._client.get)

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._poll(time.monotonic()))

    async def finish(self) -> list[dict]:
        """The server figures of every collector that has some."""
        self._stop.set()
        assert self._task is not None, "finish() follows start()"
        await self._task  # not cancelled: a poll in flight may hold iterations TRT-LLM has already drained
        self.prefix_cache = await self._prefix_cache.end(self._client.get)
        return [r for r in [await c.end(self._client.get) for c in self._collectors] if r is not None]

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _poll(self, started: float) -> None:
        """Sample each collector at its own interval (default SERVER_POLL_S) until finish(); TRT-LLM's
        draining iteration stats need reading more often, before its queue overflows."""
        collectors = self._collectors
        due = [started + getattr(c, "poll_interval_s", SERVER_POLL_S) for c in collectors]
        while True:
            try:  # no collectors (--engine openai): nothing to sample, wait for the end
                await asyncio.wait_for(self._stop.wait(), max(0.0, min(due) - time.monotonic()) if due else None)
                return
            except TimeoutError:
                pass
            now = time.monotonic()
            for i, collector in enumerate(collectors):
                if now >= due[i]:
                    await collector.poll(self._client.get, now - started)
                    if (self._metrics is not None and collector.series
                            and collector.series[-1]["acceptance_length"]):
                        self._metrics.set_server_acceptance_length(collector.series[-1]["acceptance_length"])
                    due[i] = now + getattr(collector, "poll_interval_s", SERVER_POLL_S)
