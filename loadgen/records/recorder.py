"""Turns one response stream's timestamped events into a RequestRecord.

`on_event` runs once per SSE event on the network read path: it decodes the chunk with the
engine adapter, keeps the timestamp and token count, and nothing else. (Holding payloads to
decode them in batches was measured and dropped: streams started together reach their batch
ends together, and 512 streams' batches at once stalled the read loop for ~80 ms.)
"""

from __future__ import annotations

from array import array
from collections.abc import Callable

from loadgen.engines import EngineAdapter

from .record import ErrorInfo, RequestRecord
from .steps import step_starts

__all__ = ["StreamRecorder", "EstimatedChatRecorder"]


class StreamRecorder:
    __slots__ = ("record", "_decode", "_counted", "_one_per_chunk", "_usage_tokens", "_texts", "_step_gap_ns")

    def __init__(self, record: RequestRecord, adapter: EngineAdapter, keep_text: bool = False,
                 chat: bool = False) -> None:
        """chat: the stream is /v1/chat/completions (the adapter's decode_chat, its chat_token_counts;
        an "estimated" adapter needs EstimatedChatRecorder instead)."""
        self.record = record
        self._texts: list[str] | None = [] if keep_text else None
        self._decode = adapter.decode_chat if chat else adapter.decode
        self._counted = 0  # tokens attributed to chunks so far
        self._usage_tokens: int | None = None
        counts = adapter.chat_token_counts if chat else adapter.token_counts
        self._one_per_chunk = counts in ("one_per_chunk", "one_per_token")
        # One chunk per token (llama.cpp): grouped into engine steps when the request ends.
        self._step_gap_ns = adapter.step_gap_ns

    def on_event(self, t_ns: int, data: bytes) -> None:
        record = self.record
        try:
            fields = self._decode(data)
        except ValueError as exc:
            if record.error is None:
                record.error = ErrorInfo("malformed", f"undecodable chunk: {exc}"[:200])
            return
        if fields.error is not None:
            record.error = ErrorInfo("stream_error", fields.error[:500])
            return
        completion_tokens = fields.completion_tokens
        if completion_tokens is not None:
            # Cumulative usage: this chunk carries what the count says was not yet seen. On every
            # chunk (continuous usage stats) that is each chunk's count; on llama.cpp's closing
            # chunk, the tokens it held back (a token ending mid-character shares the next one's chunk).
            self._usage_tokens = completion_tokens
            tokens = completion_tokens - self._counted
        elif fields.tokens is not None:
            tokens = fields.tokens
        else:
            tokens = 1 if (fields.has_choice and self._one_per_chunk) else 0
        if tokens > 0:
            self._counted += tokens
        if fields.finish_reason is not None:
            record.finish_reason = fields.finish_reason
        if fields.draft_tokens is not None:
            record.server_draft_tokens = fields.draft_tokens
            record.server_accepted_tokens = fields.accepted_tokens
        if fields.prompt_tokens is not None:
            record.server_prompt_tokens = fields.prompt_tokens
        if self._texts is not None and fields.text and not fields.reasoning:  # the answer is the next context
            self._texts.append(fields.text)
        if tokens <= 0 or not fields.has_choice:
            return
        chunk_ns = record.chunk_ns
        if not chunk_ns:
            record.first_ns = t_ns
        record.last_ns = t_ns
        chunk_ns.append(t_ns)
        record.chunk_tokens.append(tokens)
        if fields.reasoning:
            record.reasoning_tokens += tokens
        elif not record.first_answer_ns:
            record.first_answer_ns = t_ns
        if fields.sent_ns is not None:
            record.receive_lag_ns.append(t_ns - fields.sent_ns)

    @property
    def text(self) -> str:
        """The reply's text (multi-turn workloads only: it becomes the next turn's context)."""
        return "".join(self._texts or ())

    def finish(self, error: ErrorInfo | None) -> RequestRecord:
        """Close the record: the transport's error (if any) wins over a stream-level one."""
        record = self.record
        if error is not None:
            record.error = error
        counted = sum(record.chunk_tokens)
        record.output_tokens = self._usage_tokens if self._usage_tokens is not None else counted
        if self._step_gap_ns is not None and record.chunk_ns:
            _group_into_steps(record, self._step_gap_ns)
        return record


def _group_into_steps(record: RequestRecord, gap_ns: int) -> None:
    """One entry per chunk becomes one entry per step (see records.steps). A chunk that carried
    several tokens (held back mid-character) gives each its arrival time."""
    def per_token(values) -> list[int]:
        return [v for v, n in zip(values, record.chunk_tokens) for _ in range(n)]

    token_ns = per_token(record.chunk_ns)
    starts = step_starts(token_ns, accepted=record.server_accepted_tokens, gap_ns=gap_ns)
    if len(record.receive_lag_ns) == len(record.chunk_ns):
        token_lag = per_token(record.receive_lag_ns)
        record.receive_lag_ns = array("q", (token_lag[i] for i in starts))
    record.chunk_ns = array("q", (token_ns[i] for i in starts))
    record.chunk_tokens = array("i", (b - a for a, b in zip(starts, [*starts[1:], len(token_ns)])))


class EstimatedChatRecorder:
    """A chat stream from a server that gives no per-chunk counts (the plain OpenAI adapter): on the
    read path each text-carrying chunk keeps only its time and text; when the request ends the reply
    is tokenized once with the run's tokenizer (`estimate`: the texts -> tokens ending in each) and
    each token is counted in the chunk its text ends in. A chunk in which no token ends holds none
    and is no step. The record is marked estimated_counts; output_tokens is still the server's usage
    where it sends one at the end."""

    __slots__ = ("record", "_estimate", "_texts", "_reasoning", "_usage_tokens", "_keep_text", "_decode")

    def __init__(self, record: RequestRecord, adapter: EngineAdapter, estimate: Callable[[list[str]], list[int]],
                 keep_text: bool = False) -> None:
        self.record = record
        self._estimate = estimate
        self._texts: list[str] = []
        self._reasoning: list[bool] = []
        self._usage_tokens: int | None = None
        self._keep_text = keep_text
        self._decode = adapter.decode_chat

    def on_event(self, t_ns: int, data: bytes) -> None:
        record = self.record
        try:
            fields = self._decode(data)
        except ValueError as exc:
            if record.error is None:
                record.error = ErrorInfo("malformed", f"undecodable chunk: {exc}"[:200])
            return
        if fields.error is not None:
            record.error = ErrorInfo("stream_error", fields.error[:500])
            return
        if fields.completion_tokens is not None:
            self._usage_tokens = fields.completion_tokens
        if fields.prompt_tokens is not None:
            record.server_prompt_tokens = fields.prompt_tokens
        if fields.finish_reason is not None:
            record.finish_reason = fields.finish_reason
        if fields.text:
            record.chunk_ns.append(t_ns)
            self._texts.append(fields.text)
            self._reasoning.append(fields.reasoning)

    @property
    def text(self) -> str:
        """The answer's text (reasoning left out): the next turn's context."""
        return "".join(t for t, r in zip(self._texts, self._reasoning) if not r) if self._keep_text else ""

    def finish(self, error: ErrorInfo | None) -> RequestRecord:
        record = self.record
        if error is not None:
            record.error = error
        counts = self._estimate(self._texts) if self._texts else []
        kept = [i for i, n in enumerate(counts) if n > 0]
        record.chunk_ns = array("q", (record.chunk_ns[i] for i in kept))
        record.chunk_tokens = array("i", (counts[i] for i in kept))
        record.reasoning_tokens = sum(counts[i] for i in kept if self._reasoning[i])
        answers = [record.chunk_ns[j] for j, i in enumerate(kept) if not self._reasoning[i]]
        if kept:
            record.first_ns, record.last_ns = record.chunk_ns[0], record.chunk_ns[-1]
            record.first_answer_ns = answers[0] if answers else 0
        record.output_tokens = self._usage_tokens if self._usage_tokens is not None else sum(record.chunk_tokens)
        record.estimated_counts = True
        return record
