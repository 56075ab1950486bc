"""The OpenAI completions stream format shared by every engine."""

from __future__ import annotations

import orjson

from .base import ChunkFields, EngineSpec, Finding, SpecCounters
from .prefix_cache import PrefixCacheReading
from .prometheus_text import Scrape, SpecMetricNames, first_counters
from .server_metrics import (
    NO_SERVER_AL,
    SPECULATIVE_CHECK,
    CounterCollector,
    Getter,
    SpecReading,
    counter_reading,
    fetch_text,
    readings_finding,
)

__all__ = ["OpenAIAdapter", "load_chunk", "decode_openai_object", "decode_chat_object", "SPEC"]


def load_chunk(data: bytes) -> dict:
    """One `data:` payload as a JSON object; ValueError when it is not one (the caller records it as
    malformed)."""
    obj = orjson.loads(data)
    if not isinstance(obj, dict):
        raise ValueError("chunk is not a JSON object")
    return obj


#: ChunkFields from all its values at once: NamedTuple's generated __new__ (keywords, defaults) is
#: a Python call more, once per chunk on the read path
_chunk_fields = tuple.__new__


def decode_openai_object(obj: dict) -> ChunkFields:
    """The fields every engine's /v1/completions chunk shares; an engine with more (llama.cpp's
    timings) reads them from the same object in its own adapter."""
    error = obj.get("error")
    if error is not None:
        message = error.get("message") if isinstance(error, dict) else str(error)
        return ChunkFields(None, None, False, None, str(message), None)
    usage = obj.get("usage")
    completion_tokens = usage.get("completion_tokens") if usage else None
    choices = obj.get("choices")
    tokens = None
    finish = None
    text = ids = None
    if choices:
        choice = choices[0]
        finish = choice.get("finish_reason")
        text = choice.get("text")
        ids = choice.get("token_ids")
        if ids is not None:
            tokens = len(ids)
    # the prompt's count and its cached tokens from the closing chunks only (every chunk of continuous
    # usage repeats them): where engines put prompt_tokens_details
    prompt_tokens = cached_tokens = None
    if usage and (finish is not None or not choices):
        prompt_tokens, cached_tokens = usage.get("prompt_tokens"), _cached_tokens(usage)
    return _chunk_fields(ChunkFields, (completion_tokens, tokens, bool(choices), finish, None,
                                       obj.get("emulator_sent_ns"), text, None, None, prompt_tokens, None, None,
                                       cached_tokens, ids, None))


def _cached_tokens(usage: dict) -> int | None:
    """usage.prompt_tokens_details.cached_tokens: the prompt tokens the server's prefix cache held."""
    details = usage.get("prompt_tokens_details")
    return details.get("cached_tokens") if isinstance(details, dict) else None


def decode_chat_object(obj: dict, completion_tokens: int | None = None) -> ChunkFields:
    """The fields of a /v1/chat/completions chunk (`choices[0].delta`). The answer is `content`;
    reasoning arrives in `reasoning_content` (llama.cpp tools/server/server-chat.cpp
    server_chat_msg_diff_to_json_oaicompat; SGLang serving_chat.py _generate_stream_content; TRT-LLM
    serve/postprocess_handlers.py chat_stream_post_processor) or `reasoning` (vLLM 0.32:
    DeltaMessage.reasoning, entrypoints/generate/base/protocol.py), in the same delta as content in
    the step where reasoning ends (vLLM, TRT-LLM); an empty reasoning delta (a token with no text
    yet, as vLLM streams it) is kept as "" so the chunk still counts as reasoning. Cumulative
    reasoning counts where usage has them:
    vLLM's completion_tokens_details.reasoning_tokens (chat_completion/serving.py
    _make_completion_tokens_details, with a reasoning parser), SGLang's usage.reasoning_tokens
    (UsageProcessor.calculate_token_usage). A chunk without text (the role-only first chunk, an
    empty finish chunk) holds a token only where a count says so.
    completion_tokens: the engine's cumulative count where it is not in usage (llama.cpp's timings)."""
    error = obj.get("error")
    if error is not None:
        message = error.get("message") if isinstance(error, dict) else str(error)
        return ChunkFields(None, None, False, None, str(message), None)
    usage = obj.get("usage")
    prompt_tokens = reasoning_tokens = cached_tokens = None
    if usage:
        completion_tokens = usage.get("completion_tokens")
        prompt_tokens = usage.get("prompt_tokens")
        cached_tokens = _cached_tokens(usage)
        details = usage.get("completion_tokens_details")
        reasoning_tokens = details.get("reasoning_tokens") if details else usage.get("reasoning_tokens")
    choices = obj.get("choices")
    tokens = None
    finish = None
    text = reasoning = ids = None
    has_choice = False
    if choices:
        choice = choices[0]
        finish = choice.get("finish_reason")
        delta = choice.get("delta") or {}
        text = delta.get("content")
        reasoning = delta.get("reasoning_content")
        if reasoning is None:
            reasoning = delta.get("reasoning")
        ids = choice.get("token_ids")
        if ids is not None:
            tokens = len(ids)
        has_choice = bool(text or reasoning) or tokens is not None or completion_tokens is not None
    return _chunk_fields(ChunkFields, (completion_tokens, tokens, has_choice, finish, None, obj.get("emulator_sent_ns"),
                                       text, None, None, prompt_tokens, reasoning, reasoning_tokens, cached_tokens,
                                       ids, None))


class OpenAIAdapter:
    """A server known only to speak OpenAI, and the base of every engine adapter.

    No per-chunk token counts are promised, so a chunk with a choice counts as one token unless
    the server puts cumulative usage on every chunk anyway; the report says so.
    """

    name = "openai"
    token_counts = "one_per_chunk"
    step_gap_ns: int | None = None
    authoritative = ("none", "a plain OpenAI server gives no per-chunk token counts and no server metrics: "
                             "tokens per chunk are assumed, not measured")
    drafts_are_decode_steps = False

    def request_body(self, *, model: str, prompt, max_tokens: int, temperature: float, ignore_eos: bool) -> dict:
        return {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": temperature,
                "stream": True, "stream_options": {"include_usage": True}}

    def decode(self, data: bytes) -> ChunkFields:
        """Decode one `data:` payload of a /v1/completions stream; ValueError when it is not a chunk."""
        return decode_openai_object(load_chunk(data))

    #: a plain OpenAI server promises no per-chunk counts on chat: they are estimated from the text
    chat_token_counts = "estimated"

    def chat_body(self, *, model: str, messages: list[dict], max_tokens: int, temperature: float,
                  ignore_eos: bool) -> dict:
        """The engine's own completions body with `messages` in place of `prompt`: every engine here
        takes the same sampling and stream options on both routes."""
        body = self.request_body(model=model, prompt=None, max_tokens=max_tokens, temperature=temperature,
                                 ignore_eos=ignore_eos)
        del body["prompt"]
        return {**body, "messages": messages}

    def decode_chat(self, data: bytes) -> ChunkFields:
        return decode_chat_object(load_chunk(data))

    per_request_figures = (False, "not given by a plain OpenAI server")
    version_endpoint: tuple[str, str] | None = None
    own_endpoints: tuple[str, ...] = ()
    metrics_path: str | None = None
    prefix_cache_metrics: tuple[str, ...] = ()
    cache_isolation_field: tuple[str, bool] | None = None
    cached_tokens_zero_omitted = False
    output_ids_fields: dict | None = None
    chat_output_ids_fields: dict | None = None
    output_ids_note = "a plain OpenAI server has no way known to loadgen to send output token ids"
    output_ids_drop_text = False

    def collectors(self) -> list:
        return []

    def prefix_cache_reading(self, metrics_text: str) -> PrefixCacheReading | None:
        return None

    def context_length(self, model: dict) -> int | None:
        """vLLM's and SGLang's max_model_len; a server that does not give it has no known limit."""
        length = model.get("max_model_len")
        return length if isinstance(length, int) and not isinstance(length, bool) else None

    #: the endpoints whose bodies speculative_reading reads, best source first; none for a plain server
    speculative_paths: tuple[str, ...] = ()
    #: the engine's cumulative spec-decode counters on metrics_path: one set of names per range of
    #: versions, newest first (tests/unit/engines/real holds a real scrape of each); () where none
    counter_shapes: tuple[SpecMetricNames, ...] = ()
    #: how to turn metrics_path on, where it does not answer
    metrics_hint = ""

    def counter_collector(self, source: str) -> CounterCollector:
        path, shapes, hint = self.metrics_path, self.counter_shapes, self.metrics_hint
        assert path and shapes, "an engine with counters on its metrics endpoint"
        return CounterCollector(path, lambda body: counter_reading(body, path, shapes, hint), source)

    def spec_counters(self, metrics_text: str) -> SpecCounters | None:
        """The counters at one scrape, in the first of counter_shapes the scrape has in full."""
        found = first_counters(Scrape(metrics_text), self.counter_shapes)
        return found[1] if found else None

    def speculative_reading(self, path: str, body: str | None) -> SpecReading:
        """What loadgen reads of acceptance in one BODY of PATH (None: it did not answer): here the
        counters on metrics_path; engines with other endpoints read those too."""
        if path == self.metrics_path and self.counter_shapes:
            return counter_reading(body, path, self.counter_shapes, self.metrics_hint)[0]
        return SpecReading(path, "absent", "names no speculative-decoding metrics")

    async def speculative_metrics(self, get: Getter) -> Finding:
        """Each of speculative_paths read once, and what the run's server AL will be from them."""
        if not self.speculative_paths:
            return Finding(SPECULATIVE_CHECK, "a plain OpenAI server names no speculative-decoding metrics",
                           NO_SERVER_AL, affects_figures=True)
        return readings_finding([self.speculative_reading(path, await fetch_text(get, path))
                                 for path in self.speculative_paths])


#: any other OpenAI-compatible server: what --engine auto falls back to; loadgen neither starts
#: nor emulates it
SPEC = EngineSpec(name="openai", adapter=OpenAIAdapter)
