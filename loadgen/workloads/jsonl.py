"""Pre-tokenized prompts from a JSONL file: {"prompt_token_ids": [...], "category": "...", "max_tokens": n}."""

from __future__ import annotations

from pathlib import Path

import orjson

from loadgen.errors import UsageError

from .prompt import Prompt

__all__ = ["load_token_jsonl"]


def load_token_jsonl(path: Path) -> list[Prompt]:
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read workload file {path}: {exc.strerror}") from exc
    prompts = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise UsageError(f"{where}: not valid JSON ({exc}); each line must be one JSON object") from exc
        ids = row.get("prompt_token_ids") if isinstance(row, dict) else None
        if not isinstance(ids, list) or not ids or not all(isinstance(t, int) and t >= 0 for t in ids):
            raise UsageError(f"{where}: needs \"prompt_token_ids\": a non-empty list of non-negative integers")
        max_tokens = row.get("max_tokens")
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise UsageError(f"{where}: \"max_tokens\" must be a positive integer")
        prompts.append(Prompt(str(row.get("id", f"line-{number}")), tuple(ids),
                              str(row.get("category", "default")), max_tokens))
    if not prompts:
        raise UsageError(f"workload file {path} holds no prompts")
    return prompts
