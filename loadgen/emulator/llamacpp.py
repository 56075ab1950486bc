"""llama.cpp's `llama-server` wire format, as read from its source (tools/server/server-task.cpp,
server-context.cpp, server.cpp) and seen on a live server (../shared/LLAMACPP.md):

- ONE SSE event per token, even with speculative decoding: a step's tokens go out as a burst of
  events (here in one socket write), each `{"choices":[{"text","index":0,"logprobs":null,
  "finish_reason":null}],"created","model","system_fingerprint","object":"text_completion",
  "id":"chatcmpl-…"}`. Then a final event with empty text, `finish_reason`, `usage` and `timings`
  {cache_n, prompt_n, prompt_ms, prompt_per_token_ms, prompt_per_second, predicted_n, predicted_ms,
  predicted_per_token_ms, predicted_per_second, and draft_n, draft_n_accepted when anything was
  drafted}, then `data: [DONE]`. No continuous usage; usage is always on the final event. A draft
  is never longer than the tokens still allowed minus one (so draft_n need not be a multiple of
  the draft length, and nothing accepted is thrown away at max_tokens).
- token ids: only with `"verbose": true` on a streamed /v1/completions request, in each event's
  `__verbose` {index, content, tokens: [the id], stop, id_slot, tokens_predicted, tokens_evaluated}
  (server-task.cpp to_json_oaicompat / to_json_non_oaicompat); `return_tokens` alone puts no id in a
  streamed event (seen on llama-server 0.3.36). The final event's and non-streamed answers'
  __verbose (generation settings and all) are not emulated.
- /metrics: `llamacpp:` counters and gauges with no labels, values written by a C++ ostream
  (%g, six significant digits), and `llamacpp:spec_decode_num_accepted_tokens_per_pos_total
  {position}` when there are draft positions.
- /v1/models (and /models) carries both an Ollama-style `models` list and OpenAI `data`.
- errors are `{"error": {"code", "message", "type"}}`; a failed stream ends with
  `data: {"error": {...}}` and no [DONE].

/v1/chat/completions (server-task.cpp server_task_result_cmpl_partial::to_json_oaicompat_chat,
server_task_result_cmpl_final::to_json_oaicompat_chat_stream and to_json_oaicompat_chat;
server-chat.cpp server_chat_msg_diff_to_json_oaicompat): one `chat.completion.chunk` event per token,
keys `choices` [{finish_reason, index, delta}], created, id, model, system_fingerprint, object; the
first token's result is preceded by a `{"role":"assistant","content":null}` delta; a token's delta
is `{"content"}` or, for reasoning (the server's reasoning format; here --reasoning-tokens),
`{"reasoning_content"}`. The final result is an event with an empty delta and the finish reason,
then with stream_options.include_usage a `choices: []` event with usage, `timings` on the last of
them; then [DONE] (server-context.cpp). The message of the non-streaming answer has `content` and,
when there is reasoning, `reasoning_content` (common/chat.cpp common_chat_msg::to_json_oaicompat).

llama-server's own `--spec-synth-rates` are UNCONDITIONAL per-position probabilities; the emulator's
--accept stays CONDITIONAL (P(position i accepted | 1..i-1 accepted)) here as for every engine.
"""

from __future__ import annotations

import orjson

from .engine import (
    CATEGORY_HEADER,
    GenerationParams,
    Personality,
    RequestRejected,
    chat_prompt_token_count,
    emulator_lag_lines,
    prompt_token_count,
    split_reasoning,
    sse,
    temperature_of,
)

__all__ = ["Llamacpp", "StreamEncoder", "ChatStreamEncoder", "cpp_double"]

SYSTEM_FINGERPRINT = "b1-emulator"


def cpp_double(value: float) -> str:
    """A double as `std::ostream << value` writes it by default (%g, six significant digits)."""
    return format(float(value), ".6g")


def _usage(params: GenerationParams, completion_tokens: int) -> dict:
    return {"completion_tokens": completion_tokens, "prompt_tokens": params.prompt_tokens,
            "total_tokens": completion_tokens + params.prompt_tokens,
            "prompt_tokens_details": {"cached_tokens": params.cached_tokens or 0}}


def timings(gen, now_ns: int) -> dict:
    """result_timings::to_json() for one request: prompt = arrival -> first token, predicted =
    first token -> last token."""
    params = gen.params
    first = gen.first_ns or now_ns
    prompt_ms = (first - gen.start_ns) / 1e6
    predicted_ms = (now_ns - first) / 1e6
    cached = params.cached_tokens or 0
    processed = params.prompt_tokens - cached  # llama-server's prompt_n leaves the cached tokens out
    out = {"cache_n": cached,
           "prompt_n": processed, "prompt_ms": prompt_ms,
           "prompt_per_token_ms": prompt_ms / processed,
           "prompt_per_second": 1e3 * processed / prompt_ms if prompt_ms > 0 else 0.0,
           "predicted_n": gen.emitted, "predicted_ms": predicted_ms,
           "predicted_per_token_ms": predicted_ms / gen.emitted if gen.emitted else 0.0,
           "predicted_per_second": 1e3 * gen.emitted / predicted_ms if predicted_ms > 0 else 0.0}
    draft_n = gen.draft_tokens
    if draft_n > 0:
        out["draft_n"] = draft_n
        out["draft_n_accepted"] = gen.accepted
    return out


class StreamEncoder:
    """server_task_result_cmpl_partial::to_json_oaicompat() per token, pre-encoded around the text."""

    __slots__ = ("_head", "_foot", "_rid", "_created", "_params", "_model")

    per_token = True

    def __init__(self, rid: str, created: int, params: GenerationParams, model: str) -> None:
        self._head = b'{"choices":[{"text":'
        self._foot = (b',"index":0,"logprobs":null,"finish_reason":null}],"created":%d,"model":' % created
                      + orjson.dumps(model) + b',"system_fingerprint":' + orjson.dumps(SYSTEM_FINGERPRINT)
                      + b',"object":"text_completion","id":' + orjson.dumps(rid))
        self._rid, self._created, self._params, self._model = rid, created, params, model

    def events(self, texts: list[str], token_ids: list[int], finish_reason: str | None, completion_tokens: int,
               steps: int, extra: bytes = b"") -> bytes:
        """One event per token; the finish reason goes on the final event (tail), not on these.
        With ids asked for (`"verbose": true`), each event carries its token's id in `__verbose`."""
        head, foot = b"data: " + self._head, self._foot + extra + b"}\n\n"
        dumps = orjson.dumps
        if not token_ids:
            return b"".join([head + dumps(t) + foot for t in texts])
        first = completion_tokens - len(texts) + 1  # tokens_predicted of the first of these events
        return b"".join([head + dumps(t) + self._foot + self._verbose(t, token_id, first + i) + extra + b"}\n\n"
                         for i, (t, token_id) in enumerate(zip(texts, token_ids))])

    def _verbose(self, text: str, token_id: int, tokens_predicted: int) -> bytes:
        """`"__verbose"`: server_task_result_cmpl_partial::to_json_non_oaicompat() (server-task.cpp), which
        to_json_oaicompat() adds when the task's params.verbose is set, the request's `verbose` field
        (server-schema.cpp field_bool("verbose")). Its `tokens` is the one token of the event
        (server-context.cpp send_partial_response: res->tokens.assign(1, tkn.tok)), whether or not
        `return_tokens` is given: on /v1/completions that flag only fills the non-streamed final answer's
        __verbose. Seen on llama-server 0.3.36: without "verbose" no event carries an id. id_slot is -1
        on partial events there too."""
        return (b',"__verbose":{"index":0,"content":' + orjson.dumps(text) + b',"tokens":[%d],"stop":false,'
                b'"id_slot":-1,"tokens_predicted":%d,"tokens_evaluated":%d}'
                % (token_id, tokens_predicted, self._params.prompt_tokens))

    def tail(self, gen, now_ns: int) -> bytes:
        final = {"choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": "length"}],
                 "created": self._created, "model": self._model, "system_fingerprint": SYSTEM_FINGERPRINT,
                 "object": "text_completion",
                 "usage": _usage(self._params, gen.emitted),
                 "id": self._rid, "timings": timings(gen, now_ns)}
        return sse(final) + b"data: [DONE]\n\n"


class ChatStreamEncoder:
    """server_task_result_cmpl_partial::to_json_oaicompat_chat() per token, pre-encoded around the delta."""

    __slots__ = ("_head", "_foot", "_first", "_rid", "_created", "_params", "_model", "_reasoning")

    per_token = True

    def __init__(self, rid: str, created: int, params: GenerationParams, model: str) -> None:
        self._head = b'data: {"choices":[{"finish_reason":null,"index":0,"delta":'
        self._foot = (b'}],"created":%d,"id":' % created + orjson.dumps(rid) + b',"model":' + orjson.dumps(model)
                      + b',"system_fingerprint":' + orjson.dumps(SYSTEM_FINGERPRINT)
                      + b',"object":"chat.completion.chunk"')
        self._first = True
        self._rid, self._created, self._params, self._model = rid, created, params, model
        self._reasoning = params.reasoning_tokens

    def events(self, texts: list[str], token_ids: list[int], finish_reason: str | None, completion_tokens: int,
               steps: int, extra: bytes = b"") -> bytes:
        """One event per token; the finish reason goes on the final event (tail), not on these."""
        head, foot = self._head, self._foot + extra + b"}\n\n"
        dumps = orjson.dumps
        out = []
        if self._first:
            self._first = False
            out.append(head + b'{"role":"assistant","content":null}' + foot)
        n_reasoning = self._reasoning - (completion_tokens - len(texts))  # of these tokens, reasoning
        for i, text in enumerate(texts):
            field = b'{"reasoning_content":' if i < n_reasoning else b'{"content":'
            out.append(head + field + dumps(text) + b"}" + foot)
        return b"".join(out)

    def tail(self, gen, now_ns: int) -> bytes:
        common = {"created": self._created, "id": self._rid, "model": self._model,
                  "system_fingerprint": SYSTEM_FINGERPRINT, "object": "chat.completion.chunk"}
        events = [{"choices": [{"finish_reason": "length", "index": 0, "delta": {}}], **common}]
        if self._params.include_usage:
            events.append({"choices": [], **common, "usage": _usage(self._params, gen.emitted)})
        events[-1]["timings"] = timings(gen, now_ns)
        return b"".join(sse(e) for e in events) + b"data: [DONE]\n\n"


class Llamacpp(Personality):
    name = "llamacpp"
    owned_by = "llamacpp"
    #: the recipes' pin: llama.cpp 0.5.0-dev at 0c1e570, the build llama-cpp-python 0.3.36 vendors
    versions = ("0.5.0-dev+0c1e570",)
    id_prefix = "chatcmpl-"
    merges_steps = False  # llama-server has no stream interval: one event per token anyway

    _ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                    501: "not_supported_error", 503: "unavailable_error"}

    def request_id(self, n: int) -> str:
        return f"chatcmpl-{n:032d}"

    def parse_request(self, body: object, headers: dict[str, str]) -> GenerationParams:
        if not isinstance(body, dict):
            raise RequestRejected(400, "request body must be a JSON object")
        prompt = body.get("prompt")
        prompt_tokens = prompt_token_count(prompt) if prompt else None
        if prompt_tokens is None:
            raise RequestRejected(400, "\"prompt\" must be a string or a list of tokens")
        return self._params(body, headers, prompt_tokens, chat=False)

    def parse_chat_request(self, body: object, headers: dict[str, str]) -> GenerationParams:
        """oaicompat_chat_params_parse (server-common.cpp): `messages` required and an array."""
        if not isinstance(body, dict):
            raise RequestRejected(400, "request body must be a JSON object")
        if "messages" not in body:
            raise RequestRejected(400, "'messages' is required")
        prompt_tokens = chat_prompt_token_count(body["messages"])
        if prompt_tokens is None:
            raise RequestRejected(400, "Expected 'messages' to be an array")
        return self._params(body, headers, prompt_tokens, chat=True)

    def _params(self, body: dict, headers: dict[str, str], prompt_tokens: int, chat: bool) -> GenerationParams:
        # n_predict <- max_completion_tokens <- max_tokens; -1 (llama-server's default) means "until
        # the end of the context", which the emulator, having no EOS, replaces by 16
        max_tokens = body.get("n_predict", body.get("max_completion_tokens", body.get("max_tokens", -1)))
        if max_tokens is None or max_tokens == -1:
            max_tokens = 16
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise RequestRejected(400, f"n_predict must be at least 1 (or -1), got {max_tokens!r}")
        options = body.get("stream_options") or {}
        return GenerationParams(model=self.config.model, prompt_tokens=prompt_tokens, max_tokens=max_tokens,
                                stream=bool(body.get("stream", False)),
                                include_usage=bool(isinstance(options, dict) and options.get("include_usage")),
                                continuous_usage=False,
                                return_token_ids=not chat and bool(body.get("stream")) and body.get("verbose") is True,
                                ignore_eos=bool(body.get("ignore_eos", False)), category=headers.get(CATEGORY_HEADER),
                                chat=chat, reasoning_tokens=self.config.reasoning_tokens if chat else 0,
                                temperature=temperature_of(body))

    def stream_encoder(self, rid: str, created: int, params: GenerationParams) -> StreamEncoder:
        return StreamEncoder(rid, created, params, self.config.model)

    def chat_request_id(self, n: int) -> str:
        return self.request_id(n)

    def chat_stream_encoder(self, rid: str, created: int, params: GenerationParams) -> ChatStreamEncoder:
        return ChatStreamEncoder(rid, created, params, self.config.model)

    def chat_body(self, gen, now_ns: int) -> dict:
        params = gen.params
        reasoning, content = split_reasoning(gen.texts, gen.emitted, params.reasoning_tokens)
        message = {"role": "assistant", "content": content}
        if reasoning:
            message["reasoning_content"] = reasoning
        return {"choices": [{"finish_reason": "length", "index": 0, "message": message}],
                "created": gen.created, "model": self.config.model, "system_fingerprint": SYSTEM_FINGERPRINT,
                "object": "chat.completion", "usage": _usage(params, gen.emitted), "id": gen.rid,
                "timings": timings(gen, now_ns)}

    def completion_body(self, gen, text: str, ids: list[int], finish: str, now_ns: int) -> dict:
        params = gen.params
        return {"choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}],
                "created": gen.created, "model": self.config.model, "system_fingerprint": SYSTEM_FINGERPRINT,
                "object": "text_completion",
                "usage": _usage(params, gen.emitted),
                "id": gen.rid, "timings": timings(gen, now_ns)}

    def models_body(self) -> dict:
        model = self.config.model
        return {
            "models": [{"name": model, "model": model, "modified_at": "", "size": "", "digest": "", "type": "model",
                        "description": "", "tags": [""], "capabilities": ["completion"], "parameters": "",
                        "details": {"parent_model": "", "format": "gguf", "family": "", "families": [""],
                                    "parameter_size": "", "quantization_level": ""}}],
            "object": "list",
            "data": [{"id": model, "aliases": [model], "tags": [], "object": "model", "created": self.created,
                      "owned_by": "llamacpp",
                      "meta": {"vocab_type": 2, "n_vocab": 32000, "n_ctx": self.config.max_model_len,
                               "n_ctx_train": self.config.max_model_len, "n_embd": 0, "n_params": 0, "size": 0,
                               "ftype": "F16"}}]}

    #: whether a draft is cut to the tokens still allowed (llama-server drafts at most n_predict - n_decoded - 1)
    caps_drafts = True

    def error_body(self, status: int, message: str) -> dict:
        return {"error": {"code": status, "message": message, "type": self._ERROR_TYPES.get(status, "server_error")}}

    def respond_error(self, conn, status: int, message: str, body: dict | None = None) -> None:
        if status == 404 and body is None:  # the HTTP layer's own answer for an unknown route
            body = {"error": {"message": "File Not Found", "type": "not_found_error", "code": 404}}
        super().respond_error(conn, status, message, body)

    def error_event(self, status: int, message: str) -> bytes | None:
        return sse(self.error_body(status, message))  # no [DONE] after an error

    def routes(self):
        return {**super().routes(), ("GET", "/models"): self._models, ("GET", "/metrics"): self._metrics}

    def _health(self, conn, request) -> None:
        conn.respond(200, b'{"status":"ok"}')

    #: a slot reuses the longest common prefix, token by token (tools/server/server-context.cpp,
    #: `n_past = slot.prompt.tokens.get_common_prefix(input_tokens)`)
    cache_block_tokens = 1

    def cache_identity(self, body: dict) -> tuple[str | None] | None:
        """`cache_prompt: false` skips the reuse (tools/server/server-context.cpp: reuse only
        `if (slot.task->params.cache_prompt ...)`; server-schema.cpp, field_bool("cache_prompt"),
        true by default)."""
        return None if body.get("cache_prompt") is False else (None,)

    def metrics_text(self) -> str:
        """server_task_result_metrics::to_metrics(): counters, then gauges, then accepted tokens per
        draft position. n_decode_total counts step-timer firings that stepped a request (one
        llama_decode() per batch); the spec counters are printed (as zeros) even without a draft."""
        t = self.counters.totals()
        steps = t["batch_steps"]
        prompt_s, predicted_s = t["prompt_ns"] / 1e9, t["predicted_ns"] / 1e9
        counters = [
            ("prompt_tokens_total", "Number of prompt tokens processed, excluding cached tokens",
             t["prompt_tokens"] - t["prefix_cache_hits"]),
            ("prompt_tokens_cached_total", "Number of prompt tokens reused from the cache", t["prefix_cache_hits"]),
            ("prompt_seconds_total", "Total time spent processing prompts", prompt_s),
            ("tokens_predicted_total", "Number of generation tokens processed", t["generation_tokens"]),
            ("tokens_predicted_seconds_total", "Total time spent generating tokens", predicted_s),
            ("n_decode_total", "Total number of llama_decode() calls, excluding speculative decoding and "
                               "multimodal decoding", steps),
            ("n_tokens_max", "Largest observed sequence length (prompt + generation)", t["seq_len_max"]),
            ("spec_decode_num_draft_tokens_total", "Speculative: Total draft tokens generated",
             t["spec_draft_tokens"]),
            ("spec_decode_num_accepted_tokens_total", "Speculative: Total draft tokens accepted by the target model",
             t["spec_accepted_tokens"]),
            ("spec_decode_num_drafts_total", "Speculative: Total speculative decoding verification steps",
             t["spec_drafts"]),
        ]
        gauges = [
            ("prompt_tokens_seconds", "Average prompt throughput in tokens/s",
             t["prompt_tokens"] / prompt_s if prompt_s > 0 else 0.0),
            ("predicted_tokens_seconds", "Average generation throughput in tokens/s",
             t["generation_tokens"] / predicted_s if predicted_s > 0 else 0.0),
            ("requests_processing", "Number of requests processing", t["requests_running"]),
            ("requests_deferred", "Number of requests deferred", 0),
            ("n_busy_slots_per_decode", "Average number of busy slots per llama_decode() call",
             t["batch_items"] / max(steps, 1)),
        ]
        lines: list[str] = []
        for kind, items in (("counter", counters), ("gauge", gauges)):
            for name, help_, value in items:
                lines += [f"# HELP llamacpp:{name} {help_}", f"# TYPE llamacpp:{name} {kind}",
                          f"llamacpp:{name} {cpp_double(value)}"]
        per_pos = self.counters.per_position(t)
        if per_pos:
            name = "llamacpp:spec_decode_num_accepted_tokens_per_pos_total"
            lines += [f"# HELP {name} Accepted tokens per draft position", f"# TYPE {name} counter"]
            lines += [f'{name}{{position="{i}"}} {n}' for i, n in enumerate(per_pos)]
        lines.extend(emulator_lag_lines(t))
        return "\n".join(lines) + "\n"

    def _metrics(self, conn, request) -> None:
        self.respond_text(conn, self.metrics_text())
