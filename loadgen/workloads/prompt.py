"""The unit of work: token ids to send, with what the report groups by."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Prompt"]


@dataclass(frozen=True, slots=True)
class Prompt:
    prompt_id: str
    token_ids: tuple[int, ...]
    category: str = "default"
    max_tokens: int | None = None  # per-prompt override of --max-tokens
    turn: int = 0
