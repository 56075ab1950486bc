"""Dataset readers: each turns one dataset's own file format into Conversation rows.

Formats (see README): Spec-Bench and MT-Bench question.jsonl, ShareGPT JSON, custom JSONL,
SPEED-Bench parquet. Every reader names the file and line of a malformed row.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TypedDict

import orjson

from loadgen.errors import UsageError

from .prompt import Conversation

__all__ = ["distinct_row_ids", "read_specbench", "read_sharegpt", "read_custom_jsonl", "read_speed",
           "SPEED_PLACEHOLDER", "SPEED_CATEGORIES"]

SPEED_PLACEHOLDER = "FULL BENCHMARK DATA SHOULD BE FETCHED FROM THE SOURCE USING SPECDEC_BENCH"
SPEED_CATEGORIES = ("coding", "humanities", "math", "multilingual", "qa", "rag", "reasoning", "roleplay", "stem",
                    "summarization", "writing")


def _jsonl(path: Path) -> Iterable[tuple[str, object]]:
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                yield f"{path}:{number}", orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise UsageError(f"{path}:{number}: not valid JSON ({exc}); each line must be one JSON "
                                 "object") from None


def _turns(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(t, str) and t for t in value):
        raise UsageError(f"{where}: \"turns\" must be a non-empty list of non-empty strings")
    return tuple(value)


def _max_tokens(row: dict, where: str) -> int | None:
    value = row.get("max_tokens")
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise UsageError(f"{where}: \"max_tokens\" must be a positive integer")
    return value


def _nonempty(rows: list[Conversation], path: Path) -> list[Conversation]:
    if not rows:
        raise UsageError(f"{path} holds no prompts")
    return rows


def read_specbench(path: Path) -> list[Conversation]:
    """Spec-Bench / MT-Bench question.jsonl: {"question_id", "category", "turns": [...]}."""
    rows = []
    for where, row in _jsonl(path):
        if not isinstance(row, dict) or "turns" not in row:
            raise UsageError(f"{where}: expected an object with \"question_id\", \"category\" and \"turns\"")
        rows.append(Conversation(str(row.get("question_id", where.rsplit(":", 1)[1])),
                                 str(row.get("category", "default")), _turns(row["turns"], where)))
    return _nonempty(rows, path)


def read_sharegpt(path: Path, whole_conversations: bool = False) -> list[Conversation]:
    """ShareGPT: [{"id", "conversations": [{"from": "human"|"gpt", "value"}]}].

    By default the first human turn only; with whole_conversations every human turn is sent in
    order (the model's own replies replace the recorded gpt turns).
    """
    try:
        data = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"{path}: not valid JSON ({exc}); ShareGPT files are one JSON list") from None
    if not isinstance(data, list):
        raise UsageError(f"{path}: expected a JSON list of conversations")
    rows = []
    for i, item in enumerate(data):
        convo = item.get("conversations") if isinstance(item, dict) else None
        if not isinstance(convo, list):
            raise UsageError(f"{path}: item {i} has no \"conversations\" list")
        human = [m.get("value", "") for m in convo if isinstance(m, dict) and m.get("from") in ("human", "user")]
        human = [h for h in human if isinstance(h, str) and h.strip()]
        if not human:
            continue  # conversations that open with the model or hold no text are skipped, as others do
        turns = tuple(human if whole_conversations else human[:1])
        rows.append(Conversation(str(item.get("id", i)), "sharegpt", turns))
    return _nonempty(rows, path)


class _CommonFields(TypedDict):
    """The Conversation fields every custom line may set, whatever its prompt is."""

    row_id: str
    category: str
    sub_category: str
    max_tokens: int | None


def read_custom_jsonl(path: Path) -> list[Conversation]:
    """Custom lines: {"messages": [...]} | {"prompt": "..."} | {"prompt_token_ids": [...]}, each with
    optional "id", "category", "sub_category", "max_tokens"."""
    rows = []
    for where, row in _jsonl(path):
        if not isinstance(row, dict):
            raise UsageError(f"{where}: each line must be a JSON object")
        common: _CommonFields = {"row_id": str(row.get("id", where.rsplit(":", 1)[1])),
                                 "category": str(row.get("category", "default")),
                                 "sub_category": str(row.get("sub_category", "")),
                                 "max_tokens": _max_tokens(row, where)}
        if "prompt_token_ids" in row:
            ids = row["prompt_token_ids"]
            if not isinstance(ids, list) or not ids or not all(isinstance(t, int) and not isinstance(t, bool)
                                                               and t >= 0 for t in ids):
                raise UsageError(f"{where}: \"prompt_token_ids\" must be a non-empty list of non-negative integers")
            rows.append(Conversation(prompt_token_ids=tuple(ids), **common))
        elif "messages" in row:
            messages = row["messages"]
            if (not isinstance(messages, list) or not messages
                    or not all(isinstance(m, dict) and m.get("role") in ("system", "user", "assistant")
                               and isinstance(m.get("content"), str) for m in messages)):
                raise UsageError(f"{where}: \"messages\" must be a list of {{\"role\", \"content\"}} objects")
            if messages[-1]["role"] != "user":
                raise UsageError(f"{where}: the last message must be the user's (it is what gets answered)")
            rows.append(Conversation(turns=(messages[-1]["content"],), history=tuple(messages[:-1]), **common))
        elif "turns" in row:
            rows.append(Conversation(turns=_turns(row["turns"], where), **common))
        elif isinstance(row.get("prompt"), str) and row["prompt"]:
            rows.append(Conversation(turns=(row["prompt"],), **common))
        else:
            raise UsageError(f"{where}: needs one of \"messages\", \"prompt\", \"turns\" or \"prompt_token_ids\"")
    return _nonempty(rows, path)


def read_speed(files: list[Path], config: str) -> list[Conversation]:
    """SPEED-Bench parquet (columns question_id, category, sub_category, turns, ...). Rows still
    holding the hub's placeholder text are refused: they must be resolved first."""
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is a dependency
        raise UsageError("reading SPEED-Bench needs pyarrow: pip install pyarrow") from None
    rows = []
    for file in files:
        try:
            table = pq.read_table(file, columns=["question_id", "category", "sub_category", "turns"])
        except Exception as exc:
            raise UsageError(f"cannot read SPEED-Bench parquet {file}: {str(exc).splitlines()[0][:160]}") from None
        for row in table.to_pylist():
            turns = tuple(row["turns"] or ())
            if any(t.startswith(SPEED_PLACEHOLDER) for t in turns):
                raise UsageError(f"SPEED-Bench {config} row {row['question_id']} ({row['category']}) is a placeholder; "
                                 f"run `loadgen workloads prepare speed --config {config}` first (needs network)")
            rows.append(Conversation(str(row["question_id"]), str(row["category"]), _turns(list(turns), str(file)),
                                     sub_category=str(row.get("sub_category") or "")))
    if not rows:
        raise UsageError(f"no SPEED-Bench rows in {', '.join(map(str, files))}")
    return rows


def distinct_row_ids(rows: list[Conversation]) -> list[Conversation]:
    """Rows keep the dataset's own ids (the id a paper's per-prompt table uses), made distinct where
    they repeat: an id found in several categories becomes "category/id" in each, and one still
    repeated (the same id twice in a category) gets "#2", "#3", ... on its later rows."""
    if len({r.row_id for r in rows}) == len(rows):
        return rows
    categories: dict[str, set[str]] = {}
    for r in rows:
        categories.setdefault(r.row_id, set()).add(r.category)
    named = [r.row_id if len(categories[r.row_id]) == 1 else f"{r.category}/{r.row_id}" for r in rows]
    seen: Counter[str] = Counter()
    out = []
    for row, name in zip(rows, named):
        seen[name] += 1
        out.append(dataclasses.replace(row, row_id=name if seen[name] == 1 else f"{name}#{seen[name]}"))
    return out
