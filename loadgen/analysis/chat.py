"""Figures of runs that send text (--endpoint chat, --prompt-format text) or stream reasoning:
reasoning and answer tokens apart, the time to the first answer token, and tokenization parity."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from loadgen.engines import EngineAdapter
from loadgen.records import RequestRecord

from .stats import distribution

__all__ = ["ESTIMATED_FIGURES", "UNREAD_COUNTS", "chat_figures", "parity", "parity_line", "token_counts_of",
           "ttft_answer_s"]

_NS = 1e-9

#: the report figures that rest on per-chunk token counts: estimated with them
ESTIMATED_FIGURES = ("speculative.client", "speculative.cross_check", "categories.acceptance_length",
                     "time_series.acceptance_length", "levels.acceptance_length")


#: the client's token_counts where chunks came without the counts the adapter reads (RequestRecord.uncounted_chunks)
UNREAD_COUNTS = "not read"


def token_counts_of(adapter: EngineAdapter, endpoint: str) -> str:
    """How the run's per-chunk token counts were obtained, on the route it sent to."""
    return adapter.chat_token_counts if endpoint == "chat" else adapter.token_counts


def parity_line(server: int, local: int) -> str:
    """The warning, one request's counts in it."""
    return (f"the server counted {server} prompt tokens where the local template gives {local}: "
            "wrong --tokenizer or chat template?")


def parity(records: Sequence[RequestRecord]) -> dict | None:
    """TokenizationParity's fields over the requests whose server counted their prompt; None where none did."""
    counted = [r for r in records if r.server_prompt_tokens is not None]
    if not counted:
        return None
    mismatched = [r for r in counted if r.server_prompt_tokens != r.prompt_tokens]
    first = mismatched[0] if mismatched else None
    return {"requests": len(counted), "mismatched": len(mismatched),
            "server_prompt_tokens": sum(r.server_prompt_tokens or 0 for r in counted),
            "local_prompt_tokens": sum(r.prompt_tokens for r in counted),
            "example": parity_line(first.server_prompt_tokens or 0, first.prompt_tokens) if first else None,
            "flagged": bool(mismatched)}


def ttft_answer_s(records: Sequence[RequestRecord]) -> np.ndarray:
    """Scheduled send -> first answer token, successful requests that had an answer."""
    return np.array([(r.first_answer_ns - r.scheduled_ns) * _NS for r in records if r.ok and r.first_answer_ns],
                    dtype=np.float64)


def chat_figures(records: Sequence[RequestRecord], config: dict, token_counts: str) -> dict | None:
    """ChatFigures' fields, or None for a run that sent token ids and streamed no reasoning."""
    endpoint, prompt_format = config.get("endpoint", "completions"), config.get("prompt_format", "ids")
    reasoning = sum(r.reasoning_tokens for r in records)
    if endpoint == "completions" and prompt_format == "ids" and not reasoning:
        return None
    return {"endpoint": endpoint, "prompt_format": prompt_format, "token_counts": token_counts,
            "estimated_figures": list(ESTIMATED_FIGURES) if token_counts == "estimated" else [],
            "reasoning_tokens": reasoning,
            "answer_tokens": sum(r.output_tokens for r in records) - reasoning,
            "ttft_answer_s": distribution(ttft_answer_s(records), reorder=True),
            "parity": parity(records) if endpoint == "chat" or prompt_format == "text" else None}
