"""One request's measurement, built from timestamped SSE events off the network read path."""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

__all__ = ["ErrorInfo", "RequestRecord", "ERROR_KINDS"]

#: every failure is one of these (the report counts them by kind)
ERROR_KINDS = ("connect", "http_status", "timeout", "disconnect", "stream_error", "malformed", "cancelled",
               "worker_lost")


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    kind: str
    message: str
    status: int | None = None
    phase: str | None = None  # a timeout's: connect, first_token, idle or total

    def to_json(self) -> dict:
        return {"kind": self.kind, "message": self.message, "status": self.status, "phase": self.phase}

    @property
    def detail(self) -> str:
        """kind, with the HTTP status or the timeout's phase: "http_status/503", "timeout/idle"."""
        extra = self.status if self.kind == "http_status" else self.phase
        return f"{self.kind}/{extra}" if extra is not None else self.kind


@dataclass(slots=True)
class RequestRecord:
    """Times are CLOCK_MONOTONIC nanoseconds of the process that sent the request.

    chunk_ns/chunk_tokens hold the token-carrying chunks only (chunks of 0 tokens, such as the final
    usage chunk, are not steps). output_tokens comes from the server's usage when it gives one.
    """

    request_id: int
    category: str
    turn: int
    prompt_tokens: int
    max_tokens: int
    scheduled_ns: int
    warmup: bool = False
    sub_category: str = ""
    sent_ns: int = 0
    first_ns: int = 0
    last_ns: int = 0
    #: when the exchange ended (last byte, error or cancel): with sent_ns, the span it was in flight
    end_ns: int = 0
    chunk_ns: array = field(default_factory=lambda: array("q"))
    chunk_tokens: array = field(default_factory=lambda: array("i"))
    #: receive time minus the emulator's send stamp per chunk (benchmarks only; empty otherwise)
    receive_lag_ns: array = field(default_factory=lambda: array("q"))
    output_tokens: int = 0
    finish_reason: str | None = None
    error: ErrorInfo | None = None
    #: the engine's own count of this request's draft and accepted tokens, where it reports one (llama.cpp)
    server_draft_tokens: int | None = None
    server_accepted_tokens: int | None = None
    #: --retries: the failures of earlier attempts of this request (ErrorInfo.detail each)
    retried: list[str] = field(default_factory=list)
    #: the prompt tokens the server's prefix cache held for this request (its usage'
    #: prompt_tokens_details.cached_tokens), where the server says
    cached_tokens: int | None = None
    #: the workload prompt this request's conversation started from (Prompt.prompt_id): the run's
    #: expected prefix-cache hit rate and its repeated prompts are counted from it
    prompt_id: str = ""
    #: the server's own count of the prompt (usage.prompt_tokens), where it gives one: compared with
    #: prompt_tokens, the local template's, for tokenization parity
    server_prompt_tokens: int | None = None
    #: output tokens that streamed as reasoning (chat: reasoning_content / reasoning deltas); they
    #: are output tokens all the same (in output_tokens, AL, TPOT and throughput)
    reasoning_tokens: int = 0
    #: the first chunk of the answer (content), after any reasoning; first_ns where there is none
    first_answer_ns: int = 0
    #: chunk_tokens were estimated by tokenizing the streamed text (the server gave no counts)
    estimated_counts: bool = False
    #: --output-ids: the output's token ids as the engine streamed them (empty where it sent none);
    #: the prompt's are the workload's (prompt_id), not journaled again
    output_ids: array = field(default_factory=lambda: array("i"))
    #: the engine's own count of this request's decode steps, where its closing chunk gives one
    #: (vLLM num_spec_steps: steps that verified a draft; TRT-LLM: iterations less the prefill's)
    server_steps: int | None = None
    #: one-chunk-per-token streams (llama.cpp): the steps the stream's own gaps show (prefill
    #: included), before its chunks are grouped by the engine's count; the per-request cross-check's
    #: client side there
    stream_steps: int | None = None
    #: chunks with a choice but no token count, from an engine whose adapter reads cumulative usage on
    #: every chunk: a version without continuous usage stats, whose tokens then all land on the closing
    #: usage chunk; the report says its counts were not read rather than calling that chunk one step
    uncounted_chunks: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def outcome(self) -> str:
        if self.error is None:
            return "ok"
        return "cancelled" if self.error.kind == "cancelled" else "error"

    def shift(self, delta_ns: int) -> None:
        """Move every time by delta_ns: a record from another machine's clock into this one's."""
        for name in ("scheduled_ns", "sent_ns", "first_ns", "last_ns", "end_ns", "first_answer_ns"):
            value = getattr(self, name)
            if value:
                setattr(self, name, value + delta_ns)
        self.chunk_ns = array("q", (t + delta_ns for t in self.chunk_ns))

    def to_json(self) -> dict:
        obj = {
            "request_id": self.request_id, "category": self.category, "sub_category": self.sub_category,
            "turn": self.turn,
            "warmup": self.warmup, "prompt_tokens": self.prompt_tokens, "max_tokens": self.max_tokens,
            "scheduled_ns": self.scheduled_ns, "sent_ns": self.sent_ns, "first_ns": self.first_ns,
            "last_ns": self.last_ns, "end_ns": self.end_ns, "chunk_ns": self.chunk_ns.tolist(),
            "chunk_tokens": self.chunk_tokens.tolist(),
            "output_tokens": self.output_tokens, "finish_reason": self.finish_reason, "outcome": self.outcome,
            "error": self.error.to_json() if self.error else None,
            "server_draft_tokens": self.server_draft_tokens, "server_accepted_tokens": self.server_accepted_tokens,
        }
        if self.receive_lag_ns:
            obj["receive_lag_ns"] = self.receive_lag_ns.tolist()
        if self.retried:
            obj["retried"] = self.retried
        if self.cached_tokens is not None:
            obj["cached_tokens"] = self.cached_tokens
        if self.prompt_id:
            obj["prompt_id"] = self.prompt_id
        if self.server_prompt_tokens is not None:
            obj["server_prompt_tokens"] = self.server_prompt_tokens
        if self.reasoning_tokens or self.first_answer_ns != self.first_ns:
            obj["reasoning_tokens"] = self.reasoning_tokens
            obj["first_answer_ns"] = self.first_answer_ns
        if self.estimated_counts:
            obj["estimated_counts"] = True
        if self.output_ids:
            obj["output_ids"] = self.output_ids.tolist()
        if self.server_steps is not None:
            obj["server_steps"] = self.server_steps
        if self.stream_steps is not None:
            obj["stream_steps"] = self.stream_steps
        if self.uncounted_chunks:
            obj["uncounted_chunks"] = self.uncounted_chunks
        return obj

    @classmethod
    def from_json(cls, obj: dict) -> RequestRecord:
        error = obj.get("error")
        return cls(
            request_id=obj["request_id"], category=obj["category"], turn=obj["turn"],
            prompt_tokens=obj["prompt_tokens"], max_tokens=obj["max_tokens"], scheduled_ns=obj["scheduled_ns"],
            warmup=obj["warmup"], sub_category=obj.get("sub_category", ""), sent_ns=obj["sent_ns"],
            first_ns=obj["first_ns"], last_ns=obj["last_ns"], end_ns=obj.get("end_ns", 0),
            chunk_ns=array("q", obj["chunk_ns"]), chunk_tokens=array("i", obj["chunk_tokens"]),
            receive_lag_ns=array("q", obj.get("receive_lag_ns", ())), output_tokens=obj["output_tokens"],
            finish_reason=obj["finish_reason"],
            error=ErrorInfo(**error) if error else None,
            server_draft_tokens=obj.get("server_draft_tokens"),
            server_accepted_tokens=obj.get("server_accepted_tokens"),
            retried=obj.get("retried", []),
            cached_tokens=obj.get("cached_tokens"),
            prompt_id=obj.get("prompt_id", ""),
            server_prompt_tokens=obj.get("server_prompt_tokens"),
            reasoning_tokens=obj.get("reasoning_tokens", 0),
            first_answer_ns=obj.get("first_answer_ns", obj["first_ns"]),
            estimated_counts=obj.get("estimated_counts", False),
            output_ids=array("i", obj.get("output_ids", ())),
            server_steps=obj.get("server_steps"),
            stream_steps=obj.get("stream_steps"),
            uncounted_chunks=obj.get("uncounted_chunks", 0),
        )
