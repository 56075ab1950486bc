"""Server counters shared by the emulator's worker processes.

Each process adds to its own row of one shared-memory array (no locks, no contention); a
/metrics read from any process sums the rows, so the counters are server-wide however the
kernel spreads connections over processes. Gauges an engine publishes per worker (SGLang's
windowed acceptance, say) live in a second array of doubles, one row per worker, read per row.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence

__all__ = ["Counters", "BASE_COUNTERS"]

BASE_COUNTERS = (
    "requests_running",
    "requests_total",
    "requests_finished_length",
    "requests_finished_stop",
    "requests_aborted",
    "prompt_tokens",
    "prefix_cache_hits",  # --prefix-cache: prompt tokens found in the cache
    "generation_tokens",
    "spec_drafts",
    "spec_draft_tokens",
    "spec_accepted_tokens",
    "batch_steps",        # step-timer firings that stepped >= 1 request (llama.cpp n_decode, TRT-LLM iterations)
    "batch_items",        # requests stepped, summed over those firings
    "prompt_ns",          # arrival -> first token, summed over finished requests
    "predicted_ns",       # first token -> last token, summed over finished requests
    "seq_len_max",        # largest prompt + generated length seen
    "send_lag_ns_sum",
    "send_lag_count",
    "send_lag_ns_max",
)


class Counters:
    def __init__(self, workers: int, draft_len: int, gauges: Sequence[str] = ()) -> None:
        self.names = BASE_COUNTERS + tuple(f"spec_accepted_pos_{i}" for i in range(draft_len))
        self._index = {name: i for i, name in enumerate(self.names)}
        self._width = len(self.names)
        self._workers = workers
        self._array = multiprocessing.RawArray("q", workers * self._width)
        self.gauge_names = tuple(gauges)
        self._gauge_index = {name: i for i, name in enumerate(self.gauge_names)}
        self._gauges = multiprocessing.RawArray("d", max(1, workers * len(self.gauge_names)))
        self.row = 0  # set in each worker process

    @property
    def workers(self) -> int:
        return self._workers

    def index(self, name: str) -> int:
        return self.row * self._width + self._index[name]

    @property
    def array(self):
        """The raw shared array; hot paths add to `array[index(name)]` directly."""
        return self._array

    def add(self, name: str, value: int = 1) -> None:
        self._array[self.index(name)] += value

    def raise_max(self, name: str, value: int) -> None:
        i = self.index(name)
        if value > self._array[i]:
            self._array[i] = value

    def totals(self) -> dict[str, int]:
        out = {}
        for name, j in self._index.items():
            values = [self._array[r * self._width + j] for r in range(self._workers)]
            out[name] = max(values) if name.endswith("_max") else sum(values)
        return out

    def row_totals(self, row: int) -> dict[str, int]:
        base = row * self._width
        return {name: self._array[base + j] for name, j in self._index.items()}

    def per_position(self, totals: dict[str, int]) -> Sequence[int]:
        return [totals[n] for n in self.names if n.startswith("spec_accepted_pos_")]

    # -- gauges (per worker) -------------------------------------------------------------------
    def set_gauge(self, name: str, value: float) -> None:
        self._gauges[self.row * len(self.gauge_names) + self._gauge_index[name]] = value

    def gauge(self, row: int, name: str) -> float:
        return self._gauges[row * len(self.gauge_names) + self._gauge_index[name]]
