"""What every engine adapter provides: request bodies, chunk decoding and server SD metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

__all__ = ["ChunkFields", "SpecCounters", "EngineAdapter", "option_flags", "sizing_flags"]


class ChunkFields(NamedTuple):
    """What one SSE event says, as far as measurement needs it.

    completion_tokens: cumulative output tokens so far (continuous usage), or None.
    tokens: tokens carried by this chunk when the engine says so directly (token_ids), or None.
    has_choice: the event carries a choice (a token-carrying chunk unless it holds 0 tokens).
    """

    completion_tokens: int | None
    tokens: int | None
    has_choice: bool
    finish_reason: str | None
    error: str | None
    sent_ns: int | None  # the emulator's send stamp, when asked for (benchmarks)
    text: str | None = None  # kept only for multi-turn workloads (the reply becomes the next context)
    #: the engine's own per-request draft figures on the final chunk (llama.cpp timings), if any
    draft_tokens: int | None = None
    accepted_tokens: int | None = None


@dataclass(frozen=True)
class SpecCounters:
    """Cumulative server-side speculative-decoding counters at one scrape."""

    drafts: float
    draft_tokens: float
    accepted_tokens: float
    accepted_per_position: tuple[float, ...]

    def to_json(self) -> dict:
        return {"drafts": self.drafts, "draft_tokens": self.draft_tokens, "accepted_tokens": self.accepted_tokens,
                "accepted_per_position": list(self.accepted_per_position)}

    def minus(self, earlier: SpecCounters) -> SpecCounters:
        k = max(len(self.accepted_per_position), len(earlier.accepted_per_position))
        now = self.accepted_per_position + (0.0,) * (k - len(self.accepted_per_position))
        then = earlier.accepted_per_position + (0.0,) * (k - len(earlier.accepted_per_position))
        return SpecCounters(self.drafts - earlier.drafts, self.draft_tokens - earlier.draft_tokens,
                            self.accepted_tokens - earlier.accepted_tokens,
                            tuple(a - b for a, b in zip(now, then)))


class EngineAdapter(Protocol):
    """What the rest of loadgen needs from an engine; openai.OpenAIAdapter is the common base."""

    name: str
    #: how per-chunk token counts are obtained: "usage" (cumulative usage on every chunk, exact),
    #: "one_per_token" (the engine streams one chunk per token), "one_per_chunk" (an assumption)
    token_counts: str
    #: one chunk per token: the chunks are grouped into steps when the request ends (records.steps),
    #: by gaps longer than this many ns where the engine gave no per-request counts; None where
    #: every chunk is one step
    step_gap_ns: int | None
    #: which acceptance length to trust for this engine, and why (shown in the report)
    authoritative: tuple[str, str]

    def request_body(self, *, model: str, prompt, max_tokens: int, temperature: float,
                     ignore_eos: bool) -> dict: ...

    def decode(self, data: bytes) -> ChunkFields:
        """Decode one SSE data payload; raises ValueError when it is not a chunk."""
        ...

    def collectors(self) -> list:
        """Server-side acceptance collectors (engines.server_metrics), best source first."""
        ...


def option_flags(options: dict) -> list[str]:
    """A recipe's engine-specific options as command-line flags: {"eagle_topk": 1} -> --eagle-topk 1;
    true -> the bare flag, false or null -> left out; a key may start with dashes to keep it as written."""
    argv: list[str] = []
    for key, value in options.items():
        flag = key if key.startswith("-") else "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is not False and value is not None:
            argv += [flag, ",".join(map(str, value)) if isinstance(value, list) else str(value)]
    return argv


def sizing_flags(recipe, **flags: str) -> list[str]:
    """The recipe's sizing fields that are set, as this engine's flags:
    sizing_flags(recipe, max_model_len="--max-model-len") -> ["--max-model-len", "40960"]."""
    argv: list[str] = []
    for name, flag in flags.items():
        value = getattr(recipe, name)
        if value is not None:
            argv += [flag, str(value)]
    return argv
