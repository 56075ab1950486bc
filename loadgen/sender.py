"""Sends one conversation: its turns in order, each one request and one record."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable

import numpy as np
import orjson

from .clock import MONOTONIC_CLOCK, Clock
from .config import ENDPOINT_PATHS, RunConfig
from .engines import EngineAdapter
from .records import ErrorInfo, EstimatedChatRecorder, RequestRecord, StreamRecorder
from .transport import ExchangeError, HttpClient
from .workloads import ChatTokenizer, Prompt, render_messages

__all__ = ["Sender", "COMPLETIONS", "needs_tokenizer"]

COMPLETIONS = ENDPOINT_PATHS["completions"]


def needs_tokenizer(config: RunConfig, adapter: EngineAdapter, multi_turn: bool) -> bool:
    """Whether a Sender needs the run's tokenizer: later turns are templated during the run, text
    prompts are rendered from their messages, and chat replies from a server that gives no counts
    are tokenized to estimate them."""
    return multi_turn or config.prompt_format == "text" or (
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
        return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)

    def _first_body(self, prompt: Prompt) -> bytes:
        return self._body(prompt.token_ids, list(prompt.messages), prompt.max_tokens or self._config.max_tokens)

    def _recorder(self, record: RequestRecord, keep_text: bool) -> StreamRecorder | EstimatedChatRecorder:
        """The chat stream's recorder where the engine gives no counts on chat (estimated), else the
        usual one, reading the stream of the route requests go to."""
        chat = self._config.endpoint == "chat"
        if chat and self._adapter.chat_token_counts == "estimated":
            assert self._tokenizer is not None, "needs_tokenizer: estimated chat counts load the run's tokenizer"
            return EstimatedChatRecorder(record, self._adapter, self._tokenizer.tokens_ending_in, keep_text)
        return StreamRecorder(record, self._adapter, keep_text=keep_text, chat=chat)

    def prepare(self, prompts) -> None:
        for prompt in prompts:
            if prompt not in self._bodies:
                self._bodies[prompt] = self._first_body(prompt)

    async def send(self, prompt: Prompt, scheduled_ns: int, warmup: bool) -> None:
        body = self._bodies.get(prompt) or self._first_body(prompt)
        messages = list(prompt.messages)
        prompt_tokens = prompt.token_ids.size
        for turn in range(1 + len(prompt.followups)):
            last = turn == len(prompt.followups)
            request_id = next(self._ids)
            retried: list[str] = []
            done = True  # unless this turn is followed by another
            while True:
                record = RequestRecord(request_id, prompt.category, turn, prompt_tokens,
                                       prompt.max_tokens or self._config.max_tokens, scheduled_ns, warmup,
                                       sub_category=prompt.sub_category, retried=retried)
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
            prompt_tokens = ids.size
            body = self._body(ids, messages, record.max_tokens)
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


def _retryable(record: RequestRecord) -> bool:
    """--retries applies to failures before any token: nothing was measured yet, so a new attempt
    distorts nothing but the TTFT, which counts from the first attempt's scheduled time. Refusals
    that a retry cannot fix (4xx but 429) and cancellations are final."""
    error = record.error
    if error is None or record.chunk_ns or error.kind == "cancelled":
        return False
    return not (error.kind == "http_status" and error.status is not None and 400 <= error.status < 500
                and error.status != 429)
