"""Sends one conversation: its turns in order, each one request and one record."""

from __future__ import annotations

import asyncio
import itertools
import random
import secrets
from collections.abc import Callable

import numpy as np
import orjson

from .clock import MONOTONIC_CLOCK, Clock
from .config import ENDPOINT_PATHS, RunConfig
from .engines import EngineAdapter, output_ids_request_fields
from .records import ErrorInfo, EstimatedChatRecorder, RequestRecord, StreamRecorder
from .transport import ExchangeError, HttpClient
from .workloads import ChatTokenizer, Prompt, render_messages

__all__ = ["Sender", "COMPLETIONS", "needs_tokenizer"]

COMPLETIONS = ENDPOINT_PATHS["completions"]


def needs_tokenizer(config: RunConfig, adapter: EngineAdapter, multi_turn: bool) -> bool:
    """Whether a Sender needs the run's tokenizer: later turns are templated during the run, text
    prompts are rendered from their messages, and chat replies from a server that gives no counts
    are tokenized to estimate them, and --unique-prefix's marker is encoded."""
    return multi_turn or config.unique_prefix or config.prompt_format == "text" or (
        config.endpoint == "chat" and adapter.chat_token_counts == "estimated")


class Sender:
    """Request bodies are serialized before the run (`prepare`); later turns of multi-turn prompts
    are templated during the run, once the reply they answer has streamed in."""

    def __init__(self, client: HttpClient, adapter: EngineAdapter, model: str, config: RunConfig,
                 tokenizer: ChatTokenizer | None, on_record: Callable[[RequestRecord, bool], None], *,
                 first_id: int = 0, id_step: int = 1, on_begin: Callable[[RequestRecord], None] | None = None,
                 clock: Clock = MONOTONIC_CLOCK) -> None:
        """on_record(record, conversation_done) runs as each request ends; the flag is true for the
        last record of its conversation (its last turn, or a failed one). Request ids count from
        first_id in id_step strides, so worker processes never share one. on_begin(record), if given,
        runs as each request starts (a worker process tells its parent what it has in flight).

        `clock` schedules later turns, stamps each exchange's end and times the waits between
        attempts. The client stamps sent_ns and the chunks itself, so the clock must share its base:
        the real client's is CLOCK_MONOTONIC (MonotonicClock); a fake client in simulated time
        stamps with the fake clock."""
        self._client, self._adapter, self._model, self._config = client, adapter, model, config
        self._clock = clock
        self._tokenizer, self._on_record, self._on_begin = tokenizer, on_record, on_begin
        self._bodies: dict[Prompt, bytes] = {}
        self._ids = itertools.count(first_id, id_step)
        self._jitter = random.Random(config.seed * 31 + first_id)
        self._refused = 0  # connections refused in a row (see _pace_refusals)
        self.in_flight = 0
        self._isolation = _isolation_splice(adapter, config)
        self._unique = _UniquePrefix(tokenizer) if config.unique_prefix and tokenizer is not None else None

    def _body(self, token_ids: np.ndarray, messages: list[dict], max_tokens: int) -> bytes:
        """The request as --endpoint and --prompt-format say: the messages (chat), their rendered
        text (text) or the token ids."""
        config, adapter = self._config, self._adapter
        if config.endpoint == "chat":
            body = adapter.chat_body(model=self._model, messages=messages, max_tokens=max_tokens,
                                     temperature=config.temperature, ignore_eos=config.ignore_eos)
        else:
            prompt: np.ndarray | str = token_ids
            if config.prompt_format == "text":
                assert self._tokenizer is not None, "needs_tokenizer: text prompts load the run's tokenizer"
                tokenizer = self._tokenizer
                prompt = tokenizer.as_text_prompt(render_messages(tokenizer, messages, config.chat_template))
            body = adapter.request_body(model=self._model, prompt=prompt, max_tokens=max_tokens,
                                        temperature=config.temperature, ignore_eos=config.ignore_eos)
        if config.output_ids:  # where the engine has no way, the report's overlap section says so
            body.update(output_ids_request_fields(adapter, config.endpoint) or {})
        return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)

    def _first_body(self, prompt: Prompt) -> bytes:
        return self._body(prompt.token_ids, list(prompt.messages), prompt.max_tokens or self._config.max_tokens)

    def _unique_prompt(self, unique: _UniquePrefix, token_ids: np.ndarray, messages: list[dict],
                       conversation: int) -> tuple[np.ndarray, list[dict]]:
        """--unique-prefix: the prompt as this conversation alone sends it, and its ids. Token ids get
        the marker's ids after any BOS; text and chat prompts the marker's text before the first
        message's content (the server renders it into its template), counted by encoding the
        rendered prompt, so tokenization parity still holds."""
        if not self._config.sends_text:
            return unique.insert(token_ids, conversation), messages
        first, *rest = messages
        messages = [{**first, "content": unique.text(conversation) + first["content"]}, *rest]
        tokenizer = self._tokenizer
        assert tokenizer is not None, "needs_tokenizer: --unique-prefix loads the run's tokenizer"
        return np.asarray(tokenizer.encode(render_messages(tokenizer, messages, self._config.chat_template)),
                          dtype=np.int32), messages

    def _recorder(self, record: RequestRecord, keep_text: bool) -> StreamRecorder | EstimatedChatRecorder:
        """The chat stream's recorder where the engine gives no counts on chat (estimated), else the
        usual one, reading the stream of the route requests go to."""
        chat = self._config.endpoint == "chat"
        if chat and self._adapter.chat_token_counts == "estimated":
            assert self._tokenizer is not None, "needs_tokenizer: estimated chat counts load the run's tokenizer"
            return EstimatedChatRecorder(record, self._adapter, self._tokenizer.tokens_ending_in, keep_text)
        return StreamRecorder(record, self._adapter, keep_text=keep_text, chat=chat)

    def prepare(self, prompts) -> None:
        if self._unique is not None:
            return  # --unique-prefix: every request's body is its own
        for prompt in prompts:
            if prompt not in self._bodies:
                self._bodies[prompt] = self._first_body(prompt)

    async def send(self, prompt: Prompt, scheduled_ns: int, warmup: bool) -> None:
        unique = self._unique
        conversation = next(self._ids)
        messages = list(prompt.messages)
        if unique is None:
            body = self._bodies.get(prompt) or self._first_body(prompt)
            prompt_tokens = prompt.token_ids.size
        else:  # --unique-prefix: this conversation's own prompt, serialized now (once per request, not per chunk)
            ids, messages = self._unique_prompt(unique, prompt.token_ids, messages, conversation)
            body, prompt_tokens = self._body(ids, messages, prompt.max_tokens or self._config.max_tokens), ids.size
        isolate = self._isolation
        if isolate is not None:  # --cache-isolation: the conversation's turns share a salt, nobody else does
            body = isolate(body, conversation)
        for turn in range(1 + len(prompt.followups)):
            last = turn == len(prompt.followups)
            request_id = conversation if turn == 0 else next(self._ids)
            retried: list[str] = []
            done = True  # unless this turn is followed by another
            while True:
                record = RequestRecord(request_id, prompt.category, turn, prompt_tokens,
                                       prompt.max_tokens or self._config.max_tokens, scheduled_ns, warmup,
                                       sub_category=prompt.sub_category, retried=retried, prompt_id=prompt.prompt_id)
                recorder = self._recorder(record, keep_text=not last)
                if self._on_begin is not None:
                    self._on_begin(record)
                try:
                    await self._exchange(body, record, recorder, prompt.category)
                except BaseException:
                    self._on_record(record, True)
                    raise
                error = record.error
                if error is not None and len(retried) < self._config.retries and _retryable(record):
                    retried.append(error.detail)  # this attempt is not a request of its own
                    await self._clock.sleep_until(self._clock.now_ns() + self._backoff_ns(len(retried)))
                    continue
                done = last or not record.ok  # a failed turn ends its conversation: later turns answer nothing
                self._on_record(record, done)
                break
            await self._pace_refusals(record)
            if done:
                return
            messages += [{"role": "assistant", "content": recorder.text},
                         {"role": "user", "content": prompt.followups[turn]}]
            tokenizer = self._tokenizer
            assert tokenizer is not None, "prompts with later turns are text, so the run loaded a tokenizer"
            ids = np.asarray(tokenizer.encode(render_messages(tokenizer, messages, self._config.chat_template)),
                             dtype=np.int32)
            if unique is not None and not self._config.sends_text:
                ids = unique.insert(ids, conversation)  # its own prefix again (text: still in `messages`)
            prompt_tokens = ids.size
            body = self._body(ids, messages, record.max_tokens)
            if isolate is not None:
                body = isolate(body, conversation)
            scheduled_ns = self._clock.now_ns()  # the next turn is due as soon as the reply is in

    async def _pace_refusals(self, record: RequestRecord) -> None:
        """While connections are refused (a server down or restarting), a slot waits before its
        next request — 50 ms, doubling to 1 s — instead of spending the run's requests on thousands
        of instant failures a second. The failure is recorded all the same; it is not a retry."""
        if record.error is None or record.error.kind != "connect":
            self._refused = 0
            return
        self._refused += 1
        pause_ns = min(50_000_000 * 2 ** (self._refused - 1), 1_000_000_000)
        await self._clock.sleep_until(self._clock.now_ns() + pause_ns)

    def _backoff_ns(self, retry: int) -> int:
        """Exponential, 0.5 s doubling to at most 8 s, with jitter so retries do not come in waves."""
        return int(min(0.5 * 2 ** (retry - 1), 8.0) * (0.5 + 0.5 * self._jitter.random()) * 1e9)

    async def _exchange(self, body: bytes, record: RequestRecord, recorder: StreamRecorder | EstimatedChatRecorder,
                        category: str) -> None:
        error = None
        self.in_flight += 1
        try:
            await self._client.stream(self._config.path, body, recorder.on_event,
                                      lambda t: setattr(record, "sent_ns", t), category)
        except ExchangeError as exc:
            error = ErrorInfo(exc.kind, str(exc), exc.status, exc.phase)
        except asyncio.CancelledError:
            error = ErrorInfo("cancelled", "cancelled after interrupt")
            raise
        finally:
            record.end_ns = self._clock.now_ns()
            self.in_flight -= 1
            recorder.finish(error)


def _isolation_splice(adapter: EngineAdapter, config: RunConfig) -> Callable[[bytes, int], bytes] | None:
    """--cache-isolation: body, conversation -> the body with the engine's isolating field added as its
    last member (a JSON object's closing brace replaced): a salt of the run and the conversation (its
    turns may share what they cached, as a conversation does; no other request can), or the opt-out."""
    field = adapter.cache_isolation_field
    if not config.cache_isolation or field is None:
        return None
    name, salted = field
    if not salted:
        member = b',"%s":false}' % name.encode()
        return lambda body, conversation: body[:-1] + member
    run = secrets.token_hex(4).encode()  # a salt no earlier run used: its cached blocks are never hit
    head = b',"%s":"loadgen-%s-' % (name.encode(), run)
    return lambda body, conversation: body[:-1] + head + b"%d\"}" % conversation


class _UniquePrefix:
    """--unique-prefix: the conversation's number and a token of this sender's own (random: no earlier
    run, no other worker has it), in hexadecimal, then a newline, as token ids put after the prompt's
    BOS (or first, where it has none). Each character is encoded alone, once, so a request's prefix
    costs no tokenizer call, and no other conversation's prompt starts with it. The number comes
    first: a tokenizer may spend two ids on a character, and a marker whose first cache block held
    only the run's token would be that block for every conversation of the run (seen: 18 % hits on
    the emulator's 16-token blocks)."""

    def __init__(self, tokenizer: ChatTokenizer) -> None:
        self._ids = {c: tokenizer.encode(c) for c in "0123456789abcdef\n"}
        self._bos = tokenizer.bos_token_id
        self._run = secrets.token_hex(4)

    def text(self, conversation: int) -> str:
        """The conversation's marker as text (text and chat prompts)."""
        return f"{conversation:x}{self._run}\n"

    def insert(self, token_ids: np.ndarray, conversation: int) -> np.ndarray:
        marker = [i for c in self.text(conversation) for i in self._ids[c]]
        at = 1 if token_ids.size and self._bos is not None and token_ids[0] == self._bos else 0
        return np.concatenate([token_ids[:at], np.asarray(marker, dtype=token_ids.dtype), token_ids[at:]])


def _retryable(record: RequestRecord) -> bool:
    """--retries applies to failures before any token: nothing was measured yet, so a new attempt
    distorts nothing but the TTFT, which counts from the first attempt's scheduled time. Refusals
    that a retry cannot fix (4xx but 429) and cancellations are final."""
    error = record.error
    if error is None or record.chunk_ns or error.kind == "cancelled":
        return False
    return not (error.kind == "http_status" and error.status is not None and 400 <= error.status < 500
                and error.status != 429)
