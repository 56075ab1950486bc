"""Server counters shared by the emulator's worker processes.

Each process adds to its own row of one shared-memory array (no locks, no contention); a
/metrics read from any process sums the rows, so the counters are server-wide however the
kernel spreads connections over processes.
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
    "generation_tokens",
    "spec_drafts",
    "spec_draft_tokens",
    "spec_accepted_tokens",
    "send_lag_ns_sum",
    "send_lag_count",
    "send_lag_ns_max",
)


class Counters:
    def __init__(self, workers: int, draft_len: int) -> None:
        self.names = BASE_COUNTERS + tuple(f"spec_accepted_pos_{i}" for i in range(draft_len))
        self._index = {name: i for i, name in enumerate(self.names)}
        self._width = len(self.names)
        self._array = multiprocessing.RawArray("q", workers * self._width)
        self.row = 0  # set in each worker process

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
        rows = len(self._array) // self._width
        out = {}
        for name, j in self._index.items():
            values = [self._array[r * self._width + j] for r in range(rows)]
            out[name] = max(values) if name.endswith("_max") else sum(values)
        return out

    def per_position(self, totals: dict[str, int]) -> Sequence[int]:
        return [totals[n] for n in self.names if n.startswith("spec_accepted_pos_")]
