"""Turns one response stream's timestamped events into a RequestRecord.

`on_event` runs once per SSE event on the network read path: it decodes the chunk with the
engine adapter, keeps the timestamp and token count, and nothing else. (Holding payloads to
decode them in batches was measured and dropped: streams started together reach their batch
ends together, and 512 streams' batches at once stalled the read loop for ~80 ms.)
"""

from __future__ import annotations

from array import array
from collections.abc import Callable

from loadgen.engines import ChunkFields, EngineAdapter

from .record import ErrorInfo, RequestRecord
from .steps import step_starts

__all__ = ["StreamRecorder", "EstimatedChatRecorder"]


def _decoded(record: RequestRecord, decode: Callable[[bytes], ChunkFields], data: bytes) -> ChunkFields | None:
    """One event decoded; None, with the record's error set, for an undecodable chunk or one that
    carries the server's error."""
    try:
        fields = decode(data)
    except ValueError as exc:
        if record.error is None:
            record.error = ErrorInfo("malformed", f"undecodable chunk: {exc}"[:200])
        return None
    if fields.error is not None:
        record.error = ErrorInfo("stream_error", fields.error[:500])
        return None
    return fields


def _keep_request_figures(record: RequestRecord, fields: ChunkFields) -> None:
    """What a closing chunk (a finish reason, or no choice) says of the whole request: the
    finish reason, the server's prompt count (tokenization parity), its cached prompt tokens (prefix
    cache) and its own draft figures (llama.cpp's timings, vLLM's metrics, TRT-LLM's iterations)."""
    if fields.finish_reason is not None:
        record.finish_reason = fields.finish_reason
    if fields.prompt_tokens is not None:
        record.server_prompt_tokens = fields.prompt_tokens
    if fields.cached_tokens is not None:
        record.cached_tokens = fields.cached_tokens
    if fields.draft_tokens is not None:
        record.server_draft_tokens = fields.draft_tokens
        record.server_accepted_tokens = fields.accepted_tokens
    if fields.server_steps is not None:
        record.server_steps = fields.server_steps


class StreamRecorder:
    __slots__ = ("record", "_decode", "_counted", "_one_per_chunk", "_usage_tokens", "_texts", "_step_gap_ns",
                 "_chat", "_engine_reasoning")

    def __init__(self, record: RequestRecord, adapter: EngineAdapter, keep_text: bool = False,
                 chat: bool = False) -> None:
        """chat: the stream is /v1/chat/completions (the adapter's decode_chat, its chat_token_counts;
        an "estimated" adapter needs EstimatedChatRecorder instead)."""
        self.record = record
        self._texts: list[str] | None = [] if keep_text else None
        self._chat = chat  # reasoning and the first answer chunk are chat's; on completions the first chunk answers
        self._engine_reasoning = 0  # the engine's own cumulative reasoning count, where usage has one
        self._decode = adapter.decode_chat if chat else adapter.decode
        self._counted = 0  # tokens attributed to chunks so far
        self._usage_tokens: int | None = None
        counts = adapter.chat_token_counts if chat else adapter.token_counts
        self._one_per_chunk = counts in ("one_per_chunk", "one_per_token")
        # One chunk per token (llama.cpp): grouped into engine steps when the request ends.
        self._step_gap_ns = adapter.step_gap_ns

    def on_event(self, t_ns: int, data: bytes) -> None:
        record = self.record
        fields = _decoded(record, self._decode, data)
        if fields is None:
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
        elif self._one_per_chunk:
            tokens = 1 if fields.has_choice else 0
        else:
            tokens = 0
            if fields.has_choice:
                record.uncounted_chunks += 1
        if tokens > 0:
            self._counted += tokens
        if fields.finish_reason is not None or not fields.has_choice:  # a closing chunk: a check, not a call, per chunk
            _keep_request_figures(record, fields)
        if self._texts is not None and fields.text:  # the answer (never the reasoning) is the next context
            self._texts.append(fields.text)
        if fields.output_ids:  # --output-ids: the list the chunk's parse made, appended as it is
            record.output_ids.extend(fields.output_ids)
        if self._chat:
            self._on_chat_chunk(t_ns, fields, tokens)
        # exact counts that rise on a chunk with no choice (llama-server's closing chat usage, after a
        # token whose text never came) still arrived there: they are a chunk's tokens, not lost
        if tokens <= 0 or not (fields.has_choice or (completion_tokens is not None and not self._one_per_chunk)):
            return
        chunk_ns = record.chunk_ns
        if not chunk_ns:
            record.first_ns = t_ns
        record.last_ns = t_ns
        chunk_ns.append(t_ns)
        record.chunk_tokens.append(tokens)
        if fields.sent_ns is not None:
            record.receive_lag_ns.append(t_ns - fields.sent_ns)

    def _on_chat_chunk(self, t_ns: int, fields: ChunkFields, tokens: int) -> None:
        """A chat chunk's reasoning tokens (by its delta's fields; the engine's count kept beside
        them), and whether the answer began in it."""
        record = self.record
        reasoning, answer = fields.reasoning_text, fields.text
        if fields.reasoning_tokens is not None:
            self._engine_reasoning = fields.reasoning_tokens
        if reasoning is not None and tokens > 0 and fields.has_choice:
            record.reasoning_tokens += _reasoning_share(tokens, reasoning, answer)
        if not record.first_answer_ns and (answer or (tokens > 0 and fields.has_choice and reasoning is None)):
            record.first_answer_ns = t_ns  # answer text, even on a chunk whose step's tokens came before it

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
        if not self._chat:
            record.first_answer_ns = record.first_ns
        elif self._engine_reasoning:
            # The engine's count is exact where it counts (it splits the step in which reasoning
            # ended); a count of 0 while reasoning streamed is vLLM counting only between <think>
            # and </think>, which misses a <think> opened by the chat template: the deltas win then.
            record.reasoning_tokens = self._engine_reasoning
        if self._step_gap_ns is not None and record.chunk_ns:
            _group_into_steps(record, self._step_gap_ns)
        return record


def _reasoning_share(tokens: int, reasoning: str, answer: str | None) -> int:
    """A reasoning chunk's tokens that were reasoning: all of them, or in the step where reasoning
    ended and the answer began (both deltas in one chunk) the share of its characters that were
    reasoning, rounded (exact only where the engine counts reasoning: vLLM, SGLang)."""
    if not answer:
        return tokens
    return round(tokens * len(reasoning) / (len(reasoning) + len(answer)))


def _group_into_steps(record: RequestRecord, gap_ns: int) -> None:
    """One entry per chunk becomes one entry per step (see records.steps). A chunk that carried
    several tokens (held back mid-character) gives each its arrival time."""
    def per_token(values) -> list[int]:
        return [v for v, n in zip(values, record.chunk_tokens) for _ in range(n)]

    token_ns = per_token(record.chunk_ns)
    if record.server_accepted_tokens is not None:  # the stream's own say, for the per-request cross-check
        record.stream_steps = len(step_starts(token_ns, accepted=None, gap_ns=gap_ns))
    starts = step_starts(token_ns, accepted=record.server_accepted_tokens, gap_ns=gap_ns)
    if len(record.receive_lag_ns) == len(record.chunk_ns):
        token_lag = per_token(record.receive_lag_ns)
        record.receive_lag_ns = array("q", (token_lag[i] for i in starts))
    record.chunk_ns = array("q", (token_ns[i] for i in starts))
    record.chunk_tokens = array("i", (b - a for a, b in zip(starts, [*starts[1:], len(token_ns)])))


class EstimatedChatRecorder:
    """A chat stream from a server that gives no per-chunk counts (the plain OpenAI adapter): on the
    read path each text-carrying chunk keeps only its time and its texts (reasoning, answer); when
    the request ends the reply is tokenized once with the run's tokenizer (`estimate`: the pieces ->
    tokens ending in each) and each token is counted in the chunk its text ends in. A chunk in which
    no token ends holds none and is no step. The record is marked estimated_counts; output_tokens is
    still the server's usage where it sends one at the end."""

    __slots__ = ("record", "_estimate", "_pieces", "_reasoning", "_chunk_of", "_usage_tokens", "_keep_text",
                 "_decode")

    def __init__(self, record: RequestRecord, adapter: EngineAdapter, estimate: Callable[[list[str]], list[int]],
                 keep_text: bool = False) -> None:
        self.record = record
        self._estimate = estimate
        self._pieces: list[str] = []  # every delta's texts in order, reasoning before answer within a chunk
        self._reasoning: list[bool] = []  # per piece
        self._chunk_of: list[int] = []  # per piece: its chunk's index in record.chunk_ns
        self._usage_tokens: int | None = None
        self._keep_text = keep_text
        self._decode = adapter.decode_chat

    def on_event(self, t_ns: int, data: bytes) -> None:
        record = self.record
        fields = _decoded(record, self._decode, data)
        if fields is None:
            return
        if fields.completion_tokens is not None:
            self._usage_tokens = fields.completion_tokens
        _keep_request_figures(record, fields)
        if fields.reasoning_text or fields.text:
            chunk = len(record.chunk_ns)
            record.chunk_ns.append(t_ns)
            for text, reasoning in ((fields.reasoning_text, True), (fields.text, False)):
                if text:
                    self._pieces.append(text)
                    self._reasoning.append(reasoning)
                    self._chunk_of.append(chunk)

    @property
    def text(self) -> str:
        """The answer's text (reasoning left out): the next turn's context."""
        return "".join(t for t, r in zip(self._pieces, self._reasoning) if not r) if self._keep_text else ""

    def finish(self, error: ErrorInfo | None) -> RequestRecord:
        record = self.record
        if error is not None:
            record.error = error
        counts = self._estimate(self._pieces) if self._pieces else []
        per_chunk = [0] * len(record.chunk_ns)
        for chunk, n in zip(self._chunk_of, counts):
            per_chunk[chunk] += n
        record.reasoning_tokens = sum(n for n, reasoning in zip(counts, self._reasoning) if reasoning)
        answer_chunks = [c for c, reasoning in zip(self._chunk_of, self._reasoning) if not reasoning]
        record.first_answer_ns = record.chunk_ns[answer_chunks[0]] if answer_chunks else 0
        kept = [i for i, n in enumerate(per_chunk) if n > 0]
        record.chunk_ns = array("q", (record.chunk_ns[i] for i in kept))
        record.chunk_tokens = array("i", (per_chunk[i] for i in kept))
        if kept:
            record.first_ns, record.last_ns = record.chunk_ns[0], record.chunk_ns[-1]
        record.output_tokens = self._usage_tokens if self._usage_tokens is not None else sum(record.chunk_tokens)
        record.estimated_counts = True
        return record
