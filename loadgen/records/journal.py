"""requests.jsonl: one line per finished request, appended as it finishes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson

from .record import RequestRecord

__all__ = ["Journal", "read_journal"]


class Journal:
    """Append-only JSONL; each line is flushed to the OS when written, so a killed run keeps it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = open(path, "ab", buffering=0)

    def append(self, record: RequestRecord) -> None:
        self._file.write(orjson.dumps(record.to_json()) + b"\n")

    def close(self) -> None:
        self._file.close()


def read_journal(path: Path) -> Iterator[RequestRecord]:
    """Records of a journal; a half-written last line (a killed run) is skipped."""
    with open(path, "rb") as f:
        for line in f:
            try:
                yield RequestRecord.from_json(orjson.loads(line))
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue
