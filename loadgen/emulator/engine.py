"""The interface between the emulated server (server.py) and one engine's wire format.

Each engine module (vllm.py, sglang.py, trtllm.py, llamacpp.py) holds everything that engine says
on the wire, read from its source: how a /v1/completions request is parsed and validated, the
stream chunk bytes, the final usage / summary chunk, the non-streaming body, /v1/models, the
metrics endpoints, error bodies, and any extra routes. server.py owns timing, acceptance and the
sockets, and calls a Personality for every byte it writes:

    parse_request(body, headers) -> GenerationParams      (raises RequestRejected)
    parse_chat_request(body, headers) -> GenerationParams (chat=True) for /v1/chat/completions
    stream_encoder(rid, created, params) -> encoder with   (chat_stream_encoder for chat: the same interface)
        per_token: bool                                    text given as one string per token?
        events(text, ids, finish, completion_tokens, steps, extra) -> bytes
                                                           one chunk's SSE event(s): one step, or N merged
        tail(gen, now_ns) -> bytes                         what follows the last token, [DONE] included
    completion_body(gen, text, ids, finish, now_ns) -> dict    non-streaming answer
    chat_body(gen, now_ns) -> dict                         non-streaming chat answer (gen.texts: one per token)
    models_body() -> dict, error_body(status, message) -> dict,
    error_event(status, message) -> bytes | None           mid-stream error (None: drop the connection)
    routes() -> {(method, path): handler(conn, request)}   /health, /v1/models, metrics, extras
    on_batch(batch, now_ns)                                once per step-timer firing that did work
    on_request_end(gen, outcome, now_ns)                   once per request, when it ends (finished or aborted)

A personality speaks the versions in its `versions` (the first, its engine's recipes' pin, is the
default); `engine_version` is the one this server speaks (loadgen emulate --engine-version).

The hot path is events(): encoders pre-encode everything but the text, counts and finish reason,
and the whole chunk (every event of a step) goes out in one socket write.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:  # pragma: no cover
    from .counters import Counters
    from .http import Connection, Request
    from .server import EmulatorConfig

__all__ = ["GenerationParams", "RequestRejected", "Personality", "BatchStats", "Handler",
           "sse", "prometheus_family", "go_float", "emulator_lag_lines", "CATEGORY_HEADER", "error_type",
           "chat_prompt_token_count", "chat_chunk_head", "ChatEncoderState", "split_reasoning",
           "reasoning_count"]

Handler = Callable[["Connection", "Request"], None]

#: the request header naming the workload category (the client sends it; engines ignore it)
CATEGORY_HEADER = "x-loadgen-category"


class RequestRejected(Exception):
    """A request the engine would refuse: `status` and the engine's own error body."""

    def __init__(self, status: int, message: str, body: dict | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


@dataclass(slots=True)
class GenerationParams:
    model: str                  # the model name the chunks carry
    prompt_tokens: int
    max_tokens: int
    stream: bool
    include_usage: bool         # a final usage chunk
    continuous_usage: bool      # cumulative usage on every chunk
    return_token_ids: bool      # token ids on every chunk (vLLM return_token_ids, TRT-LLM detokenize=false)
    ignore_eos: bool
    category: str | None = None  # X-Loadgen-Category: picks the acceptance profile
    chat: bool = False           # a /v1/chat/completions request (deltas, a role chunk; see chat encoders)
    #: chat only: the first this many output tokens stream as reasoning (--reasoning-tokens), the rest as answer
    reasoning_tokens: int = 0
    #: --prefix-cache: the prompt units the cache already held (None: no prefix cache emulated)
    cached_tokens: int | None = None
    #: the request's sampling temperature (absent: 0), which lowers acceptance (profile.py temperature_slope)
    temperature: float = 0.0


class BatchStats:
    """What one firing of the step timer did: the emulator's notion of one engine iteration."""

    __slots__ = ("prefill", "decode", "drafts", "draft_tokens", "accepted", "decode_tokens", "ctx_tokens",
                 "completed")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.prefill = 0        # requests whose first (prefill) step ran
        self.decode = 0         # decode steps run
        self.drafts = 0         # decode steps that verified a draft
        self.draft_tokens = 0
        self.accepted = 0       # accepted draft tokens (bonus tokens excluded)
        self.decode_tokens = 0  # tokens produced by decode steps
        self.ctx_tokens = 0     # prompt tokens prefilled
        self.completed = 0      # requests that finished


def error_type(status: int) -> str:
    """The OpenAI-style error type name FastAPI servers (vLLM, SGLang, TRT-LLM) put in error bodies."""
    return {400: "BadRequestError", 401: "AuthenticationError", 404: "NotFoundError"}.get(status, "InternalServerError")


def max_tokens_of(body: dict, default: int = 16) -> int:
    """The request's max_tokens (vLLM and SGLang default to 16); RequestRejected when not a positive int."""
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        return default
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise RequestRejected(400, f"max_tokens must be at least 1, got {max_tokens!r}")
    return max_tokens


def temperature_of(body: dict) -> float:
    """The request's `temperature` (absent or null: 0, greedy), for the acceptance it lowers; every
    personality reads it through this one helper. RequestRejected when it is not a number; a negative
    one counts as 0 (the emulator does not reproduce each engine's own range check)."""
    temperature = body.get("temperature")
    if temperature is None:
        return 0.0
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or temperature != temperature:
        raise RequestRejected(400, f"temperature must be a number, got {temperature!r}")
    return max(0.0, float(temperature))


def prompt_token_count(prompt: object) -> int | None:
    """Tokens a prompt stands for: a token-id list's length, or (the emulator has no tokenizer) a
    text's words, at least 1; None when it is neither, and each engine words its own rejection."""
    if isinstance(prompt, str):
        return max(1, len(prompt.split()))
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
        return len(prompt)
    return None


def chat_prompt_token_count(messages: object) -> int | None:
    """Prompt tokens of a chat request's `messages`: the words of every message's text (a string
    content, or the "text" of its content parts), at least 1, as prompt_token_count counts a text
    prompt (the emulator has no tokenizer nor template, so the template's own tokens are not
    counted); None when `messages` is not a non-empty list of objects."""
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        return None
    words = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            words += len(content.split())
        elif isinstance(content, list):
            words += sum(len(part["text"].split()) for part in content
                         if isinstance(part, dict) and isinstance(part.get("text"), str))
    return max(1, words)


def chat_chunk_head(rid: str, created: int, model: str) -> bytes:
    """The start of a `chat.completion.chunk` as the FastAPI engines (vLLM, SGLang, TRT-LLM) write it,
    up to the first choice's delta: `{"id", "object", "created", "model", "choices": [{"index": 0, "delta": `."""
    return (b'{"id":' + orjson.dumps(rid) + b',"object":"chat.completion.chunk","created":%d,"model":' % created
            + orjson.dumps(model) + b',"choices":[{"index":0,"delta":')


class ChatEncoderState:
    """What every chat stream encoder keeps (vllm, sglang, trtllm subclass it): the pre-encoded
    chunk head up to the delta (`data: ` included when `sse_prefix`), the continuous-usage template
    (None without continuous usage: prompt, total and completion tokens, then the engine's own
    `usage_tail`, whose %d are filled per chunk after total and completion tokens), whether the role
    chunk is still to go, and the reasoning boundary. Chat encoders take a chunk's text as one
    string per token, to split reasoning from answer (split_reasoning)."""

    __slots__ = ("_head", "_usage", "_params", "_rid", "_created", "_first", "_reasoning")

    per_token = True

    def __init__(self, rid: str, created: int, params: GenerationParams, usage_tail: bytes, sse_prefix: bool) -> None:
        head = chat_chunk_head(rid, created, params.model)
        self._head = b"data: " + head if sse_prefix else head
        self._usage = (b',"usage":{"prompt_tokens":%d,"total_tokens":%%d,"completion_tokens":%%d,'
                       % params.prompt_tokens + usage_tail if params.continuous_usage else None)
        self._params, self._rid, self._created = params, rid, created
        self._first = True
        self._reasoning = params.reasoning_tokens


def split_reasoning(texts: list[str], completion_tokens: int, reasoning_tokens: int) -> tuple[str, str]:
    """One chunk's tokens (`texts`, the last len(texts) of `completion_tokens`) as (reasoning text,
    answer text): tokens before position `reasoning_tokens` of the output are reasoning."""
    cut = reasoning_tokens - (completion_tokens - len(texts))
    if cut <= 0:
        return "", "".join(texts)
    if cut >= len(texts):
        return "".join(texts), ""
    return "".join(texts[:cut]), "".join(texts[cut:])


def reasoning_count(params: GenerationParams, completion_tokens: int) -> int:
    """Reasoning tokens among the first `completion_tokens` output tokens of a chat request."""
    return min(params.reasoning_tokens, completion_tokens)


def usage_suffix(template: bytes | None, prompt_tokens: int, completion_tokens: int) -> bytes:
    """A streamed chunk's `"usage"` member for engines that always send one (SGLang, TRT-LLM):
    null unless per-chunk usage was asked for; `template` is filled with total and completion tokens."""
    if template is None:
        return b',"usage":null'
    return template % (prompt_tokens + completion_tokens, completion_tokens)


def sse(obj: object) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def go_float(value: float) -> str:
    """A sample value as prometheus_client writes it (repr of a float: 12.0, 2.5)."""
    return repr(float(value))


def prometheus_family(lines: list[str], name: str, kind: str, help_: str,
                      samples: list[tuple[str, float]], fmt: Callable[[float], str] = go_float) -> None:
    """Append one metric family in Prometheus text format; `samples` are (label text, value)."""
    lines.append(f"# HELP {name} {help_}")
    lines.append(f"# TYPE {name} {kind}")
    lines.extend(f"{name}{{{lbl}}} {fmt(value)}" if lbl else f"{name} {fmt(value)}" for lbl, value in samples)


def emulator_lag_lines(totals: dict[str, int]) -> list[str]:
    """The emulator's own health (not an engine metric): how late chunks left against their schedule."""
    return ["# HELP emulator_send_lag_seconds Chunk send time minus its scheduled time.",
            "# TYPE emulator_send_lag_seconds summary",
            f"emulator_send_lag_seconds_sum {totals['send_lag_ns_sum'] / 1e9:.9f}",
            f"emulator_send_lag_seconds_count {totals['send_lag_count']}",
            "# HELP emulator_send_lag_max_seconds Largest chunk send lag seen.",
            "# TYPE emulator_send_lag_max_seconds gauge",
            f"emulator_send_lag_max_seconds {totals['send_lag_ns_max'] / 1e9:.9f}"]


class Personality:
    """Base of the per-engine wire formats. Subclasses override what their engine says differently."""

    name = ""
    owned_by = ""
    #: the engine versions whose wire format this personality speaks, the first the default: the
    #: version loadgen's recipes pin (loadgen/servers/recipes/<engine>/*.yaml engine_version)
    versions: tuple[str, ...] = ()
    id_prefix = "cmpl-"
    #: whether a draft is cut to the tokens still allowed (n_predict - n_decoded - 1), as llama-server does
    caps_drafts = False
    #: whether --stream-interval merges steps (llama-server has no stream interval)
    merges_steps = True
    #: whether on_batch() is wanted: without it the step timer reports no firings (cheaper)
    uses_batches = True
    #: shared-memory gauge slots this engine publishes per worker (see Counters)
    gauges: tuple[str, ...] = ()
    #: at most one worker process (state that cannot be shared, e.g. a draining queue)
    single_worker_reason: str | None = None
    metrics_content_type = "text/plain; version=0.0.4; charset=utf-8"
    #: each request keeps its verify steps' (drafted, accepted) for a per-request report at its end
    keeps_verify_steps = False

    def __init__(self, config: EmulatorConfig, counters: Counters, worker: int) -> None:
        self.config = config
        self.counters = counters
        self.worker = worker
        self.created = int(time.time())
        self.draft_len = config.draft_len
        self.engine_version = config.engine_version or self.versions[0]

    @property
    def speculative(self) -> bool:
        return self.draft_len > 0

    # -- requests ------------------------------------------------------------------------------
    def parse_request(self, body: object, headers: dict[str, str]) -> GenerationParams:
        raise NotImplementedError

    #: --prefix-cache: the engine's cache block, in tokens (vLLM's default 16; 1 where it matches by token)
    cache_block_tokens = 16

    def cache_identity(self, body: dict) -> tuple[str | None] | None:
        """--prefix-cache: (salt,) that keys this request's cache lookup, or None where the request
        opts out of the cache. Engines without a per-request salt or opt-out: (None,)."""
        return (None,)

    def bad_json(self) -> RequestRejected:
        return RequestRejected(400, "request body is not valid JSON")

    def request_id(self, n: int) -> str:
        return f"{self.id_prefix}{n}"

    def chat_request_id(self, n: int) -> str:
        return f"chatcmpl-{n}"

    def parse_chat_request(self, body: object, headers: dict[str, str]) -> GenerationParams:
        raise NotImplementedError

    # -- responses -----------------------------------------------------------------------------
    def stream_encoder(self, rid: str, created: int, params: GenerationParams):
        raise NotImplementedError

    def completion_body(self, gen, text: str, ids: list[int], finish: str, now_ns: int) -> dict:
        raise NotImplementedError

    def chat_stream_encoder(self, rid: str, created: int, params: GenerationParams):
        raise NotImplementedError

    def chat_body(self, gen, now_ns: int) -> dict:
        raise NotImplementedError

    def models_body(self) -> dict:
        raise NotImplementedError

    def error_body(self, status: int, message: str) -> dict:
        raise NotImplementedError

    def error_event(self, status: int, message: str) -> bytes | None:
        """What the engine writes when a stream fails after it started (None: it drops the connection)."""
        return sse({"error": self.error_body(status, message)}) + b"data: [DONE]\n\n"

    def respond_error(self, conn: Connection, status: int, message: str, body: dict | None = None) -> None:
        conn.respond_json(status, body if body is not None else self.error_body(status, message))

    # -- routes and metrics --------------------------------------------------------------------
    def routes(self) -> dict[tuple[str, str], Handler]:
        return {("GET", "/health"): self._health, ("GET", "/v1/models"): self._models}

    def _health(self, conn: Connection, request: Request) -> None:
        conn.respond(200, b"")

    def _models(self, conn: Connection, request: Request) -> None:
        conn.respond_json(200, self.models_body())

    def respond_text(self, conn: Connection, text: str) -> None:
        conn.respond(200, text.encode(), self.metrics_content_type)

    def on_batch(self, batch: BatchStats, now_ns: int) -> None:
        """Called once per step-timer firing that stepped at least one request."""

    def on_request_end(self, gen, outcome: str, now_ns: int) -> None:
        """Called once per request when it ends, `outcome` the counter it ends in (requests_finished_length
        or requests_aborted): for engines that observe per-request figures then (TRT-LLM 1.2's histograms)."""
