"""What happens to each finished request, from this process or a worker: journaled at once (so a
killed run loses nothing), kept for the report, observed by the live metrics, counted against
--max-error-rate, and shown on the progress bar."""

from __future__ import annotations

import time
from collections.abc import Callable

from ..config import RunConfig
from ..records import Journal, RequestRecord
from ..sinks import LiveMetrics, RunProgress

__all__ = ["RecordTally", "MIN_ERROR_SAMPLE"]

#: --max-error-rate is judged only after this many measured requests finished
MIN_ERROR_SAMPLE = 20


class RecordTally:
    """`on_record` for the run's share. `stop_reason` is set (and `on_stop` called, once) when more
    than --max-error-rate of the measured requests failed; `progress` is the current phase's bar."""

    def __init__(self, config: RunConfig, journal: Journal, metrics: LiveMetrics | None,
                 in_flight: Callable[[], int], on_stop: Callable[[], None]) -> None:
        self._config, self._journal, self._metrics = config, journal, metrics
        self._in_flight, self._on_stop = in_flight, on_stop
        self.records: list[RequestRecord] = []
        self.stop_reason: str | None = None
        self._finished = self._failed = 0  # measured requests, for --max-error-rate
        self._done, self._started = 0, 0.0  # conversations of the current phase
        self.progress: RunProgress | None = None

    def start_phase(self, progress: RunProgress | None) -> None:
        self._done, self._started, self.progress = 0, time.monotonic(), progress

    def __call__(self, record: RequestRecord, conversation_done: bool) -> None:
        self._journal.append(record)
        self.records.append(record)
        if not record.warmup and record.outcome != "cancelled":
            self._count(record)
        if self._metrics is not None:
            self._metrics.observe(record)
        if conversation_done:
            self._done += 1
            if self.progress is not None:
                config = self._config
                limit = config.warmup if record.warmup else config.num_requests
                if limit:
                    completed: float = self._done
                else:
                    assert config.duration_s is not None, "RunConfig has a request count or a duration"
                    completed = min(time.monotonic() - self._started, config.duration_s)
                self.progress.update(completed, f"in flight {self._in_flight()}")

    def _count(self, record: RequestRecord) -> None:
        self._finished += 1
        self._failed += record.error is not None
        limit = self._config.max_error_rate
        if (limit is not None and self.stop_reason is None and self._finished >= MIN_ERROR_SAMPLE
                and self._failed / self._finished > limit):
            self.stop_reason = (f"{self._failed} of {self._finished} requests failed "
                                f"({self._failed / self._finished:.1%}), above --max-error-rate {limit:g}")
            self._on_stop()
