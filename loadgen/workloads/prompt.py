"""What a workload is made of: dataset rows (text) and the prompts built from them (token ids)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Conversation", "Prompt"]


@dataclass(frozen=True, slots=True)
class Conversation:
    """One dataset row before tokenization.

    `history` is sent as context (system/user/assistant messages given by the dataset); `turns` are
    the user messages sent one request at a time. Rows that come pre-tokenized carry
    `prompt_token_ids` instead and are sent as they are.
    """

    row_id: str
    category: str
    turns: tuple[str, ...] = ()
    sub_category: str = ""
    history: tuple[dict, ...] = ()
    max_tokens: int | None = None
    prompt_token_ids: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True, eq=False)
class Prompt:
    """The first request of a conversation, as token ids; `followups` are later user turns, templated
    during the run after each streamed reply is appended as the assistant's message."""

    prompt_id: str
    token_ids: np.ndarray
    category: str = "default"
    sub_category: str = ""
    max_tokens: int | None = None
    messages: tuple[dict, ...] = ()
    followups: tuple[str, ...] = ()
