"""Trace replay: a file of arrivals with their input and output lengths, turned into the send times
the open loop keeps and into prompts of exactly those lengths drawn from a real workload's text.

Two formats, told apart by the file's extension (.jsonl/.json, .csv) or else by its first line:

- mooncake-style JSONL, as Mooncake released its production traces (kvcache-ai/Mooncake,
  FAST25-release/README.md and FAST25-release/traces/*.jsonl): one object per line,
  {"timestamp": ms since the first request, "input_length": tokens, "output_length": tokens,
  "hash_ids": [...]}. hash_ids name the prompt's blocks of 512 tokens, ceil(input_length / 512) of
  them (the last one partial; e.g. 40160 tokens -> 79 ids in synthetic_trace.jsonl), the same id
  the same block: requests whose ids start alike share that prefix. hash_ids may be left out.
- CSV: a header naming the columns timestamp, input_tokens, output_tokens (any order; other columns
  are ignored), timestamp in SECONDS since any origin, one request per line.

Rows must be in time order (equal timestamps allowed): a trace is replayed as written.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from loadgen.errors import UsageError

from .prompt import Prompt

__all__ = ["BLOCK_TOKENS", "CSV_COLUMNS", "Trace", "TraceRow", "TraceWindow", "read_trace", "text_needed",
           "trace_prompts"]

#: tokens per hash id in mooncake traces (kvcache-ai/Mooncake FAST25-release traces: block size 512)
BLOCK_TOKENS = 512
#: the CSV header's columns: arrival time (s), prompt tokens, output tokens
CSV_COLUMNS = ("timestamp", "input_tokens", "output_tokens")
_MOONCAKE_FIELDS = ("timestamp", "input_length", "output_length")
_FORMATS_HINT = (f"give a mooncake-style .jsonl ({', '.join(_MOONCAKE_FIELDS)}, hash_ids) or a .csv with the header "
                 f"{','.join(CSV_COLUMNS)} (timestamp in seconds)")


@dataclass(frozen=True, slots=True)
class TraceRow:
    """One request of the trace; `where` (file:line) names it in errors."""

    where: str
    at_s: float  # as the file gives it, in seconds
    input_tokens: int
    output_tokens: int
    hash_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Trace:
    path: Path
    format: str  # "mooncake" or "csv"
    rows: tuple[TraceRow, ...]

    def window(self, *, warmup: int, count: int | None, duration_s: float | None, speed: float) -> TraceWindow:
        """The rows a run replays: `warmup` rows first, then the measured ones (the first `count`,
        those within `duration_s` of the first measured row after scaling, whichever ends first),
        each phase's send times relative to its own first row and divided by `speed`."""
        rows = self.rows
        if warmup >= len(rows):
            raise UsageError(f"--warmup {warmup} takes every row of the trace {self.path} ({len(rows)}); "
                             "leave rows to measure: a smaller --warmup")
        if count is not None and warmup + count > len(rows):
            raise UsageError(f"-n {count} is more than the trace {self.path} holds after {warmup} warm-up rows "
                             f"({len(rows) - warmup}); choose -n {len(rows) - warmup} or fewer")
        end = len(rows) if count is None else warmup + count
        warm = _offsets_ns(rows[:warmup], speed)
        measured = _offsets_ns(rows[warmup:end], speed)
        if duration_s is not None:
            measured = measured[measured < int(duration_s * 1e9)]
        return TraceWindow(self.path, self.format, len(rows), rows[:warmup + measured.size], warmup, speed,
                           warm.tolist(), measured.tolist())


def _offsets_ns(rows: Sequence[TraceRow], speed: float) -> np.ndarray:
    at = np.array([r.at_s for r in rows], dtype=np.float64)
    return ((at - at[0]) / speed * 1e9).astype(np.int64) if at.size else np.empty(0, np.int64)


@dataclass(frozen=True)
class TraceWindow:
    """The part of a trace one run replays: `rows` holds the warm-up rows, then the measured ones."""

    path: Path
    format: str
    trace_rows: int  # in the whole file
    rows: tuple[TraceRow, ...]
    warmup: int
    speed: float
    warmup_offsets_ns: list[int]
    measured_offsets_ns: list[int]

    @property
    def measured(self) -> int:
        return len(self.measured_offsets_ns)

    @property
    def span_s(self) -> float:
        """From the first measured send to the last, as replayed (speed applied)."""
        return self.measured_offsets_ns[-1] * 1e-9 if self.measured_offsets_ns else 0.0

    @property
    def rate(self) -> float | None:
        """The schedule's mean request rate over the measured rows; None where they all arrive at once."""
        return (self.measured - 1) / self.span_s if self.span_s > 0 else None

    def check_context(self, context_length: int | None) -> None:
        """A row whose prompt and output do not fit in the server's context would only fail there."""
        if context_length is None:
            return
        for row in self.rows:
            if row.input_tokens + row.output_tokens > context_length:
                raise UsageError(f"{row.where}: input {row.input_tokens} + output {row.output_tokens} tokens exceed "
                                 f"the server's context length {context_length}; serve a longer context or cut "
                                 "the trace (-n, --duration)")

    def info(self) -> dict:
        """The trace as the report's workload info gives it."""
        measured = self.rows[self.warmup:]
        shared = _shared_prefix_tokens(self.rows)
        return {"file": str(self.path), "format": self.format, "rows_in_file": self.trace_rows,
                "warmup_rows": self.warmup, "measured_rows": self.measured, "speed": self.speed,
                "trace_span_s": round((measured[-1].at_s - measured[0].at_s), 6) if measured else 0.0,
                "replay_span_s": round(self.span_s, 6), "scheduled_rate": self.rate,
                "input_tokens": sum(r.input_tokens for r in measured),
                "output_tokens": sum(r.output_tokens for r in measured),
                "shared_prefix_tokens": shared}


def _shared_prefix_tokens(rows: Sequence[TraceRow]) -> int:
    """Prompt tokens in blocks an earlier row of the window already sent (the hash-id prefix each row
    shares with those before it): what a prefix cache large enough could reuse."""
    seen: set[tuple[int, ...]] = set()
    shared = 0
    for row in rows:
        blocks = row.hash_ids[:row.input_tokens // BLOCK_TOKENS]
        depth = 0
        while depth < len(blocks) and blocks[:depth + 1] in seen:
            depth += 1
        shared += depth * BLOCK_TOKENS
        seen.update(blocks[:i + 1] for i in range(len(blocks)))
    return shared


def read_trace(path: Path) -> Trace:
    """The trace at `path`, every row checked; one UsageError naming the file and line otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"trace file {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the trace {path}: {getattr(exc, 'strerror', None) or exc}") from None
    lines = text.splitlines()
    first = next((line.strip() for line in lines if line.strip()), None)
    if first is None:
        raise UsageError(f"the trace {path} is empty; {_FORMATS_HINT}")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json") or (suffix != ".csv" and first.startswith("{")):
        rows, kind = _read_mooncake(path, lines), "mooncake"
    elif suffix == ".csv" or "timestamp" in first.lower().split(","):
        rows, kind = _read_csv(path, lines), "csv"
    else:
        raise UsageError(f"cannot tell the format of the trace {path}; {_FORMATS_HINT}")
    if not rows:
        raise UsageError(f"the trace {path} holds no requests; {_FORMATS_HINT}")
    for before, row in zip(rows, rows[1:]):
        if row.at_s < before.at_s:
            unit = (1e3, "ms") if kind == "mooncake" else (1.0, "s")
            raise UsageError(f"{row.where}: timestamp {row.at_s * unit[0]:g} {unit[1]} is before the previous row's "
                             f"{before.at_s * unit[0]:g} {unit[1]} ({before.where}); a trace must be in time order "
                             "(sort it by timestamp)")
    return Trace(path, kind, tuple(rows))


def _read_mooncake(path: Path, lines: list[str]) -> list[TraceRow]:
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise UsageError(f"{where}: not valid JSON; each line of a mooncake-style trace is one object with "
                             f"{', '.join(_MOONCAKE_FIELDS)} and optional hash_ids") from None
        if not isinstance(row, dict):
            raise UsageError(f"{where}: expected a JSON object with {', '.join(_MOONCAKE_FIELDS)}")
        for name in _MOONCAKE_FIELDS:
            if name not in row:
                raise UsageError(f"{where}: missing field {name!r}; each row needs {', '.join(_MOONCAKE_FIELDS)}")
        hash_ids = row.get("hash_ids", [])
        if not isinstance(hash_ids, list) or not all(_is_whole(h) and h >= 0 for h in hash_ids):
            raise UsageError(f"{where}: field 'hash_ids' must be a list of non-negative integers")
        rows.append(TraceRow(where, _time(row["timestamp"], where, "timestamp") / 1e3,
                             _length(row["input_length"], where, "input_length"),
                             _length(row["output_length"], where, "output_length"), tuple(hash_ids)))
    return rows


def _read_csv(path: Path, lines: list[str]) -> list[TraceRow]:
    numbered = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
    header = [name.strip().lower() for name in next(csv.reader([numbered[0][1]]))]
    missing = [name for name in CSV_COLUMNS if name not in header]
    if missing:
        raise UsageError(f"{path}:{numbered[0][0]}: the header lacks column {missing[0]!r}; a CSV trace starts with "
                         f"the header {','.join(CSV_COLUMNS)} (timestamp in seconds)")
    columns = [header.index(name) for name in CSV_COLUMNS]
    rows = []
    for (number, _), cells in zip(numbered[1:], csv.reader(line for _, line in numbered[1:])):
        where = f"{path}:{number}"
        if len(cells) < len(header):
            raise UsageError(f"{where}: {len(cells)} columns where the header has {len(header)}")
        at, isl, osl = (cells[i].strip() for i in columns)
        rows.append(TraceRow(where, _time(_number(at, where, "timestamp"), where, "timestamp"),
                             _length(_number(isl, where, "input_tokens"), where, "input_tokens"),
                             _length(_number(osl, where, "output_tokens"), where, "output_tokens")))
    return rows


def _number(text: str, where: str, name: str) -> float | int:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"{where}: field {name!r} is {text!r}, not a number") from None


def _is_whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _time(value: object, where: str, name: str) -> float:
    if _is_whole(value) or isinstance(value, float):
        number = float(value)  # type: ignore[arg-type]  # int or float, checked just above
        if math.isfinite(number) and number >= 0:
            return number
    raise UsageError(f"{where}: field {name!r} must be a number >= 0, got {value!r}")


def _length(value: object, where: str, name: str) -> int:
    if not _is_whole(value) or value < 1:  # type: ignore[operator]  # an int once _is_whole holds
        raise UsageError(f"{where}: field {name!r} must be a whole number of tokens >= 1, got {value!r}")
    return value  # type: ignore[return-value]  # an int, checked above


def text_needed(window: TraceWindow, frame_tokens: int) -> int:
    """Tokens of text the window's prompts draw in all: each distinct full block once, and each
    row's own text (its prompt less the template's `frame_tokens` and its shared blocks)."""
    blocks: set[int] = set()
    own = 0
    for row in window.rows:
        room = row.input_tokens - frame_tokens
        full = _full_blocks(row, room)
        blocks.update(row.hash_ids[:full])
        own += max(room, 0) - full * BLOCK_TOKENS
    return len(blocks) * BLOCK_TOKENS + own


def _full_blocks(row: TraceRow, room: int) -> int:
    """How many of the row's hash ids stand for whole blocks of its text: the last, partial one is its own."""
    return min(len(row.hash_ids), max(room, 0) // BLOCK_TOKENS)


def trace_prompts(window: TraceWindow, text: np.ndarray, head: Sequence[int], tail: Sequence[int],
                  source: str) -> list[Prompt]:
    """One prompt per row of exactly its input_tokens ids: the template's `head`, the row's full
    blocks (each hash id one block of BLOCK_TOKENS ids of `text`, the same id the same ids), its own
    text for the rest, the template's `tail`; max_tokens its output_tokens.

    `text` is read in order, each new block and each row's own text taking the next ids, so that no
    two differ only by chance; past its end it is read again from the start (`source` names it in
    the error for a row that alone needs more)."""
    frame = len(head) + len(tail)
    head_ids, tail_ids = np.asarray(head, np.int32), np.asarray(tail, np.int32)
    blocks: dict[int, np.ndarray] = {}
    cursor = 0

    def take(size: int) -> np.ndarray:
        nonlocal cursor
        ids = np.take(text, np.arange(cursor, cursor + size), mode="wrap")
        cursor += size
        return ids

    prompts = []
    for index, row in enumerate(window.rows):
        room = row.input_tokens - frame
        if room < 1:
            raise UsageError(f"{row.where}: input {row.input_tokens} tokens is not more than the chat template's own "
                             f"{frame}; use --no-chat-template, or a trace with longer inputs")
        if room > text.size:
            raise UsageError(f"{row.where}: input {row.input_tokens} tokens needs {room} tokens of text, but "
                             f"{source} holds only {text.size}; choose a larger --workload")
        full = _full_blocks(row, room)
        for block in row.hash_ids[:full]:
            if block not in blocks:
                blocks[block] = take(BLOCK_TOKENS)
        parts = [head_ids, *(blocks[b] for b in row.hash_ids[:full]), take(room - full * BLOCK_TOKENS), tail_ids]
        ids = np.concatenate(parts).astype(np.int32, copy=False)
        assert ids.size == row.input_tokens
        prompts.append(Prompt(f"trace-{index}", ids, "trace", max_tokens=row.output_tokens))
    return prompts
