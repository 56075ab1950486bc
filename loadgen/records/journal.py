"""requests.jsonl: one line per finished request, appended as it finishes."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

from .record import RequestRecord

__all__ = ["Journal", "read_journal"]


#: journaled lines reach the disk (fsync) at most this long after the OS got them
FSYNC_INTERVAL_S = 1.0


class Journal:
    """Append-only JSONL. Lines reach the OS at the latest one event-loop turn after their request
    finished (so a killed process keeps them): a burst of completions costs one write, not one
    each; and the disk at most FSYNC_INTERVAL_S later (so a lost machine keeps all but the last
    second)."""

    def __init__(self, path: Path, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.path = path
        self._file = open(path, "ab")
        self._loop = loop
        self._flush_scheduled = False
        self._synced = time.monotonic()

    def append(self, record: RequestRecord) -> None:
        self._file.write(orjson.dumps(record.to_json()) + b"\n")
        if self._loop is None:
            self._file.flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        if not self._file.closed:
            self._file.flush()
            if time.monotonic() - self._synced >= FSYNC_INTERVAL_S:
                self._sync()

    def _sync(self) -> None:
        os.fsync(self._file.fileno())
        self._synced = time.monotonic()

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            self._sync()
        self._file.close()


def read_journal(path: Path) -> Iterator[RequestRecord]:
    """Records of a journal; a half-written last line (a killed run) is skipped."""
    with open(path, "rb") as f:
        for line in f:
            try:
                yield RequestRecord.from_json(orjson.loads(line))
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue
