"""The OpenAI completions stream format shared by every engine."""

from __future__ import annotations

import orjson

from .base import ChunkFields, EngineSpec, Finding
from .prefix_cache import PrefixCacheReading
from .server_metrics import NO_SERVER_AL, SPECULATIVE_CHECK, Getter

__all__ = ["OpenAIAdapter", "load_chunk", "decode_openai_object", "SPEC"]


def load_chunk(data: bytes) -> dict:
    """One `data:` payload as a JSON object; ValueError when it is not one (the caller records it as
    malformed)."""
    obj = orjson.loads(data)
    if not isinstance(obj, dict):
        raise ValueError("chunk is not a JSON object")
    return obj


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
    text = None
    if choices:
        choice = choices[0]
        finish = choice.get("finish_reason")
        text = choice.get("text")
        ids = choice.get("token_ids")
        if ids is not None:
            tokens = len(ids)
    fields = ChunkFields(completion_tokens, tokens, bool(choices), finish, None, obj.get("emulator_sent_ns"), text)
    if usage and (finish is not None or not choices):  # the final usage: where engines put prompt_tokens_details
        details = usage.get("prompt_tokens_details")
        if isinstance(details, dict) and details.get("cached_tokens") is not None:
            return fields._replace(cached_tokens=details["cached_tokens"])
    return fields


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

    version_endpoint: tuple[str, str] | None = None
    own_endpoints: tuple[str, ...] = ()
    metrics_path: str | None = None
    prefix_cache_metrics: tuple[str, ...] = ()
    cache_isolation_field: tuple[str, bool] | None = None
    cached_tokens_zero_omitted = False

    def collectors(self) -> list:
        return []

    def prefix_cache_reading(self, metrics_text: str) -> PrefixCacheReading | None:
        return None

    def context_length(self, model: dict) -> int | None:
        """vLLM's and SGLang's max_model_len; a server that does not give it has no known limit."""
        length = model.get("max_model_len")
        return length if isinstance(length, int) and not isinstance(length, bool) else None

    async def speculative_metrics(self, get: Getter) -> Finding:
        return Finding(SPECULATIVE_CHECK, "a plain OpenAI server names no speculative-decoding metrics", NO_SERVER_AL,
                       affects_figures=True)


#: any other OpenAI-compatible server: what --engine auto falls back to; loadgen neither starts
#: nor emulates it
SPEC = EngineSpec(name="openai", adapter=OpenAIAdapter)
