"""TensorRT-LLM's `trtllm-serve` wire format, as read from its source (tensorrt_llm/serve/openai_protocol.py,
openai_server.py, postprocess_handlers.py, metrics/collector.py, executor/types.h):

- CompletionRequest is a pydantic model with extra="forbid": `model` is required and ANY other
  unknown field is a 400, answered by FastAPI's RequestValidationError handler as
  `{"error": str(exc)}`. `stream_options` (itself extra="forbid") is only allowed with stream=true;
  its include_usage defaults to true, continuous usage needs include_usage and continuous_usage_stats.
- chunks are `model_dump_json(exclude_unset=False)`: every field present (`token_ids`,
  `stop_reason`, `avg_decoded_tokens_per_iter`, `usage: null`); usage carries
  `prompt_tokens_details`; `detokenize: false` sends token ids with empty text.
- GET /metrics returns the executor's iteration stats as a JSON list and DRAINS them (each read
  returns only iterations since the previous read; at most 1000 are kept, oldest dropped).
- GET /prometheus/metrics depends on the version (--engine-version). 1.2.1, the recipes' pin: the five
  UNPREFIXED per-request metrics of metrics/collector.py before the trtllm_ prefix, labelled
  engine_type="undefined", model_name="undefined" (hard-coded by openai_server.py then), and nothing
  speculative (real outputs: tests/unit/engines/real/trtllm/unknown-2026-03/, dev-pr5785-2025-07/).
  1.3.0rc (main after PR #12545, which made the iteration and speculative stats Prometheus metrics and
  fixed the labels, and #12636, the per-position spec counters): the trtllm_* counters and gauges.
- a failure after the stream started ends the response without an error event.
- /v1/chat/completions (postprocess_handlers.py chat_stream_post_processor, chat_response_post_processor;
  openai_protocol.py at 01bf192): chunks dumped with exclude_none, so null fields are left out. The first
  is `data: {...} \\n\\n` (a space before the blank line) with `delta: {"role":"assistant"}`; each
  step's delta carries both `content` and `reasoning_content` (an empty string when there is none:
  apply_reasoning_parser returns "" without a parser); `finish_reason` on the last, and
  `avg_decoded_tokens_per_iter` (1.0 without speculation); usage (continuous or the final, fully dumped
  `choices: []` chunk) has `prompt_tokens_details` and no reasoning count. Ids are `chatcmpl-<n>`.
  openai_server.py openai_chat: the stream ends with [DONE]; the non-streaming body is model_dump().
"""

from __future__ import annotations

import time
from collections import deque

import orjson

from .engine import (
    CATEGORY_HEADER,
    BatchStats,
    ChatEncoderState,
    GenerationParams,
    Personality,
    RequestRejected,
    chat_prompt_token_count,
    emulator_lag_lines,
    error_type,
    go_float,
    prometheus_family,
    prompt_token_count,
    split_reasoning,
    sse,
    temperature_of,
    usage_suffix,
)

__all__ = ["Trtllm", "StreamEncoder", "ChatStreamEncoder", "COMPLETION_FIELDS", "CHAT_FIELDS",
           "MAX_PENDING_ITERATIONS", "REQUEST_HISTOGRAMS", "Histogram"]

#: CompletionRequest's fields (tensorrt_llm/serve/openai_protocol.py); anything else is rejected
COMPLETION_FIELDS = frozenset((
    "model", "prompt", "best_of", "echo", "frequency_penalty", "logit_bias", "logprobs", "max_tokens", "n",
    "presence_penalty", "seed", "stop", "stream", "stream_options", "suffix", "temperature", "top_p", "user",
    "lora_request", "prompt_ignore_length",
    # completion sampling params
    "use_beam_search", "top_k", "top_p_min", "min_p", "repetition_penalty", "length_penalty", "early_stopping",
    "stop_token_ids", "include_stop_str_in_output", "ignore_eos", "min_tokens", "skip_special_tokens",
    "spaces_between_special_tokens", "truncate_prompt_tokens", "return_context_logits", "detokenize",
    "thinking_token_budget",
    # completion extra params
    "add_special_tokens", "response_format", "disaggregated_params", "priority", "conversation_params",
))
#: ChatCompletionRequest's fields (tensorrt_llm/serve/openai_protocol.py at 01bf192), max_tokens being
#: the validation alias of max_completion_tokens; anything else is rejected
CHAT_FIELDS = frozenset((
    "messages", "prompt_token_ids", "prompt_token_ids_b64", "model", "frequency_penalty", "logit_bias", "logprobs",
    "top_logprobs", "max_completion_tokens", "max_tokens", "n", "presence_penalty", "response_format", "seed", "stop",
    "stream", "stream_options", "temperature", "top_p", "tools", "tool_choice", "user", "reasoning_effort",
    "thinking", "thinking_token_budget", "prompt_ignore_length",
    # chat completion sampling params
    "best_of", "use_beam_search", "top_k", "top_p_min", "min_p", "repetition_penalty", "length_penalty",
    "early_stopping", "stop_token_ids", "include_stop_str_in_output", "ignore_eos", "min_tokens",
    "skip_special_tokens", "spaces_between_special_tokens", "truncate_prompt_tokens", "lora_request",
    # chat completion extra params
    "echo", "add_generation_prompt", "add_special_tokens", "documents", "chat_template", "chat_template_kwargs",
    "media_io_kwargs", "disaggregated_params", "conversation_params", "cache_salt", "priority", "agent_hierarchy",
    "mm_processor_kwargs",
))
STREAM_OPTIONS_FIELDS = frozenset(("include_usage", "continuous_usage_stats"))
#: the executor keeps at most this many iteration stats between reads (iter_stats_max_iterations)
MAX_PENDING_ITERATIONS = 1000
VERSION = "0.0.0+loadgen.emulator"
#: the release the recipes pin, whose /prometheus/metrics has only the per-request metrics
PINNED = "1.2.1"
#: main after PR #12545 / #12636 (the 1.3.0 release candidates): the trtllm_* iteration and spec metrics
PREFIXED = "1.3.0rc"
#: what 1.1 and 1.2 label every sample with: openai_server.py passed no model or engine name yet
UNDEFINED_LABELS = 'engine_type="undefined",model_name="undefined"'
_LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
                    480.0, 960.0, 1920.0, 7680.0)
#: 1.2's per-request histograms, as metrics/collector.py MetricsCollector creates them (name, HELP,
#: bucket upper bounds), in the order the real output lists them
REQUEST_HISTOGRAMS = (
    ("e2e_request_latency_seconds", "Histogram of end to end request latency in seconds.", _LATENCY_BUCKETS),
    ("time_to_first_token_seconds", "Histogram of time to first token in seconds.",
     (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
      160.0, 640.0, 2560.0)),
    ("time_per_output_token_seconds", "Histogram of time per output token in seconds.",
     (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0)),
    ("request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", _LATENCY_BUCKETS),
)


def _validation_error(errors: list[dict]) -> RequestRejected:
    """FastAPI's RequestValidationError as trtllm-serve returns it: 400 {"error": str(exc)}."""
    n = len(errors)
    text = f"{n} validation error{'s' if n != 1 else ''}:\n" + "".join(f"  {e!r}\n" for e in errors)
    return RequestRejected(400, text.rstrip(), {"error": text.rstrip()})


def _usage(prompt_tokens: int, completion_tokens: int) -> dict:
    # UsageInfo field order: prompt_tokens, total_tokens, completion_tokens, prompt_tokens_details
    return {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + completion_tokens,
            "completion_tokens": completion_tokens, "prompt_tokens_details": {"cached_tokens": 0}}


def _tail(object_name: str, rid: str, created: int, params: GenerationParams, completion_tokens: int) -> bytes:
    """The end of a stream: with include_usage the `choices: []` usage chunk (model_dump_json(), every
    field), then [DONE]."""
    out = b""
    if params.include_usage:
        out = sse({"id": rid, "object": object_name, "created": created, "model": params.model, "choices": [],
                   "usage": _usage(params.prompt_tokens, completion_tokens)})
    return out + b"data: [DONE]\n\n"


class StreamEncoder:
    """CompletionStreamResponse.model_dump_json(exclude_unset=False), constant parts pre-encoded.

    avg_decoded_tokens_per_iter is the request's running tokens per iteration (prefill included),
    1.0 without speculation: NVIDIA's own responses show 1.0 on a server without speculative_config
    (tests/unit/engines/real/trtllm/main-2025-11-25/completion.json, 1.2 rc era)."""

    __slots__ = ("_head", "_usage", "_params", "_rid", "_created", "_ids")

    per_token = False

    def __init__(self, rid: str, created: int, params: GenerationParams) -> None:
        self._head = (b'{"id":' + orjson.dumps(rid) + b',"object":"text_completion","created":%d,"model":' % created
                      + orjson.dumps(params.model) + b',"choices":[{"index":0,"text":')
        self._usage = (b',"usage":{"prompt_tokens":%d,"total_tokens":%%d,"completion_tokens":%%d,'
                       b'"prompt_tokens_details":{"cached_tokens":0}}' % params.prompt_tokens
                       if params.continuous_usage else None)
        self._params, self._rid, self._created = params, rid, created
        self._ids = params.return_token_ids  # detokenize=false: ids instead of text

    def events(self, text: str, token_ids: list[int], finish_reason: str | None, completion_tokens: int,
               steps: int, extra: bytes = b"") -> bytes:
        finish = b"null" if finish_reason is None else b'"' + finish_reason.encode() + b'"'
        if self._ids:
            body = b'"","token_ids":' + orjson.dumps(token_ids)
        else:
            body = orjson.dumps(text) + b',"token_ids":null'
        out = (b"data: " + self._head + body + b',"logprobs":null,"finish_reason":' + finish
               + b',"stop_reason":null,"avg_decoded_tokens_per_iter":' + orjson.dumps(completion_tokens / steps)
               + b"}]")
        out += usage_suffix(self._usage, self._params.prompt_tokens, completion_tokens)
        return out + extra + b"}\n\n"

    def tail(self, gen, now_ns: int) -> bytes:
        return _tail("text_completion", self._rid, self._created, self._params, gen.emitted)


class ChatStreamEncoder(ChatEncoderState):
    """chat_stream_post_processor's chunks, constant parts pre-encoded."""

    __slots__ = ()

    def __init__(self, rid: str, created: int, params: GenerationParams) -> None:
        super().__init__(rid, created, params, b'"prompt_tokens_details":{"cached_tokens":0}}', sse_prefix=True)

    def events(self, texts: list[str], token_ids: list[int], finish_reason: str | None, completion_tokens: int,
               steps: int, extra: bytes = b"") -> bytes:
        out = b""
        prompt_tokens = self._params.prompt_tokens
        if self._first:  # yield_first_chat: "data: {json} \n\n"
            self._first = False
            usage = self._usage % (prompt_tokens, 0) if self._usage is not None else b""
            out = self._head + b'{"role":"assistant"}}]' + usage + extra + b"} \n\n"
        reasoning, content = split_reasoning(texts, completion_tokens, self._reasoning)
        choice = (b'{"content":' + orjson.dumps(content) + b',"reasoning_content":' + orjson.dumps(reasoning) + b"}")
        if finish_reason is not None:
            choice += b',"finish_reason":"' + finish_reason.encode() + b'"'
        choice += b',"avg_decoded_tokens_per_iter":' + orjson.dumps(completion_tokens / steps)
        usage = self._usage % (prompt_tokens + completion_tokens, completion_tokens) if self._usage is not None else b""
        return out + self._head + choice + b"}]" + usage + extra + b"}\n\n"

    def tail(self, gen, now_ns: int) -> bytes:
        return _tail("chat.completion.chunk", self._rid, self._created, self._params, gen.emitted)


class Histogram:
    """One prometheus_client histogram of one label set: counts per bucket (cumulative when written),
    sum and count. The personality runs in one process, so plain state is enough."""

    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
                break
        self.sum += value
        self.count += 1

    def lines(self, name: str, help_: str, labels: str) -> list[str]:
        """The family as prometheus_client's multiprocess collector writes it (as the real output
        shows): _sum, then the cumulative buckets with `le` among the sorted labels, then _count."""
        first, last = labels.split(",", 1)  # engine_type=..., model_name=...: le sorts between them
        out = [f"# HELP {name} {help_}", f"# TYPE {name} histogram", f"{name}_sum{{{labels}}} {go_float(self.sum)}"]
        running = 0
        for bound, n in zip(self.bounds, self.counts):
            running += n
            out.append(f'{name}_bucket{{{first},le="{bound!r}",{last}}} {go_float(running)}')
        out.append(f'{name}_bucket{{{first},le="+Inf",{last}}} {go_float(self.count)}')
        out.append(f"{name}_count{{{labels}}} {go_float(self.count)}")
        return out


class Trtllm(Personality):
    name = "trtllm"
    owned_by = "tensorrt_llm"
    versions = (PINNED, PREFIXED)
    single_worker_reason = ("trtllm's GET /metrics drains one server-wide queue of iteration stats, which the "
                            "emulator keeps in its one process: run it with --workers 1")

    def __init__(self, config, counters, worker) -> None:
        super().__init__(config, counters, worker)
        self._pending: deque[tuple] = deque(maxlen=MAX_PENDING_ITERATIONS)
        self._iter = 0
        self._prev_ns = 0
        self._step_ns = int(config.nominal_step_ms * 1e6)
        self._running_index = counters.index("requests_running")
        self._last_active = 0
        self._last_al = 0.0
        #: 1.2's per-request metrics: successes by finish reason and the four histograms
        self._successes: dict[str, int] = {}
        self._histograms = {name: Histogram(bounds) for name, _, bounds in REQUEST_HISTOGRAMS}

    # -- requests ------------------------------------------------------------------------------
    def parse_request(self, body: object, headers: dict[str, str]) -> GenerationParams:
        return self._parse(body, headers, chat=False)

    def parse_chat_request(self, body: object, headers: dict[str, str]) -> GenerationParams:
        return self._parse(body, headers, chat=True)

    def _parse(self, body: object, headers: dict[str, str], chat: bool) -> GenerationParams:
        """CompletionRequest or ChatCompletionRequest validation: unknown fields, `model` and the
        prompt (`prompt` / `messages`) required, max_tokens an int, stream_options only when streaming."""
        if not isinstance(body, dict):
            raise _validation_error([{"type": "model_attributes_type", "loc": ("body",),
                                      "msg": "Input should be a valid dictionary or object to extract fields from",
                                      "input": body}])
        fields, prompt_key = (CHAT_FIELDS, "messages") if chat else (COMPLETION_FIELDS, "prompt")
        errors = [{"type": "extra_forbidden", "loc": ("body", key), "msg": "Extra inputs are not permitted",
                   "input": value} for key, value in body.items() if key not in fields]
        options = body.get("stream_options")
        if isinstance(options, dict):
            errors += [{"type": "extra_forbidden", "loc": ("body", "stream_options", key),
                        "msg": "Extra inputs are not permitted", "input": value}
                       for key, value in options.items() if key not in STREAM_OPTIONS_FIELDS]
        elif options is not None:
            errors.append({"type": "model_type", "loc": ("body", "stream_options"),
                           "msg": "Input should be a valid dictionary or instance of StreamOptions", "input": options})
        if "model" not in body:
            errors.append({"type": "missing", "loc": ("body", "model"), "msg": "Field required", "input": body})
        elif not isinstance(body["model"], str):
            errors.append({"type": "string_type", "loc": ("body", "model"), "msg": "Input should be a valid string",
                           "input": body["model"]})
        prompt = body.get(prompt_key)
        prompt_tokens = chat_prompt_token_count(prompt) if chat else prompt_token_count(prompt)
        if prompt_key not in body:
            errors.append({"type": "missing", "loc": ("body", prompt_key), "msg": "Field required", "input": body})
        elif prompt_tokens is None:
            errors.append({"type": "list_type" if chat else "union_type", "loc": ("body", prompt_key),
                           "msg": "Input should be a valid list" if chat else
                           "the emulator serves one prompt per request (a string or a list of token ids)",
                           "input": prompt})
        # chat: max_completion_tokens, validation alias max_tokens (populate_by_name: either is taken)
        max_key = "max_completion_tokens" if chat and "max_completion_tokens" in body else "max_tokens"
        max_tokens = body.get(max_key)
        if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool)):
            errors.append({"type": "int_type", "loc": ("body", max_key), "msg": "Input should be a valid integer",
                           "input": max_tokens})
        if options and not body.get("stream"):  # a model_validator(mode="before") in both requests
            errors.append({"type": "value_error", "loc": ("body",),
                           "msg": "Value error, stream_options can only be set if stream is true" if chat else
                           "Value error, Stream options can only be defined when stream is true.",
                           "input": body})
        if errors:
            raise _validation_error(errors)
        assert prompt_tokens is not None, "a prompt that is neither text nor token ids is one of the errors above"
        if body.get("suffix"):
            raise RequestRejected(400, "suffix is not supported")
        if max_tokens is None:
            max_tokens = 16
        if max_tokens < 1:
            raise RequestRejected(400, f"max_tokens ({max_tokens}) must be greater than 0")
        stream = bool(body.get("stream", False))
        include = continuous = False
        if options is not None:  # StreamOptions(include_usage=True, continuous_usage_stats=False)
            include = options.get("include_usage", True) is not False
            continuous = include and bool(options.get("continuous_usage_stats", False))
        return GenerationParams(model=body["model"], prompt_tokens=prompt_tokens,
                                max_tokens=max_tokens, stream=stream,
                                include_usage=include, continuous_usage=continuous,
                                return_token_ids=not chat and body.get("detokenize", True) is False,
                                ignore_eos=bool(body.get("ignore_eos", False)), category=headers.get(CATEGORY_HEADER),
                                chat=chat, reasoning_tokens=self.config.reasoning_tokens if chat else 0,
                                temperature=temperature_of(body))

    # -- responses -----------------------------------------------------------------------------
    def stream_encoder(self, rid: str, created: int, params: GenerationParams) -> StreamEncoder:
        return StreamEncoder(rid, created, params)

    def completion_body(self, gen, text: str, ids: list[int], finish: str, now_ns: int) -> dict:
        params = gen.params
        avg = gen.emitted / gen.index if gen.index else None
        return {"id": gen.rid, "object": "text_completion", "created": gen.created, "model": params.model,
                "choices": [{"index": 0, "text": "" if params.return_token_ids else text,
                             "token_ids": ids if params.return_token_ids else None, "logprobs": None,
                             "context_logits": None, "finish_reason": finish, "stop_reason": None,
                             "disaggregated_params": None, "avg_decoded_tokens_per_iter": avg}],
                "usage": _usage(params.prompt_tokens, gen.emitted), "prompt_token_ids": None}

    def chat_stream_encoder(self, rid: str, created: int, params: GenerationParams) -> ChatStreamEncoder:
        return ChatStreamEncoder(rid, created, params)

    def chat_body(self, gen, now_ns: int) -> dict:
        """ChatCompletionResponse, every field (its ChatMessage: role, content, reasoning_content,
        reasoning, tool_calls)."""
        params = gen.params
        reasoning, content = split_reasoning(gen.texts, gen.emitted, params.reasoning_tokens)
        avg = gen.emitted / gen.index if gen.index else None
        message: dict[str, object] = {"role": "assistant", "content": content, "reasoning_content": reasoning,
                                      "reasoning": None, "tool_calls": []}
        return {"id": gen.rid, "object": "chat.completion", "created": gen.created, "model": params.model,
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "length",
                             "stop_reason": None, "mm_embedding_handle": None, "disaggregated_params": None,
                             "avg_decoded_tokens_per_iter": avg}],
                "usage": _usage(params.prompt_tokens, gen.emitted), "prompt_token_ids": None,
                "prompt_token_ids_b64": None}

    def models_body(self) -> dict:
        return {"object": "list", "data": [{"id": self.config.model, "object": "model", "created": self.created,
                                             "owned_by": "tensorrt_llm"}]}

    def error_body(self, status: int, message: str) -> dict:
        return {"object": "error", "message": message, "type": error_type(status), "param": None, "code": status}

    def bad_json(self) -> RequestRejected:
        return _validation_error([{"type": "json_invalid", "loc": ("body", 0), "msg": "JSON decode error",
                                   "input": {}, "ctx": {"error": "Expecting value"}}])

    def error_event(self, status: int, message: str) -> bytes | None:
        return None  # the generator raises: the response is cut without an error event

    # -- routes --------------------------------------------------------------------------------
    def routes(self):
        return {**super().routes(),
                ("GET", "/health_generate"): lambda conn, req: conn.respond(200, b"Generation health check OK",
                                                                            "text/plain"),
                ("GET", "/version"): lambda conn, req: conn.respond_json(200, {"version": VERSION}),
                ("GET", "/metrics"): self._iteration_stats, ("GET", "/perf_metrics"): self._perf_metrics,
                ("GET", "/prometheus/metrics"): self._prometheus}

    def on_batch(self, batch: BatchStats, now_ns: int) -> None:
        """One iteration per firing of the step timer that stepped a request (context or generation)."""
        self._iter += 1
        latency_ns = min(now_ns - self._prev_ns, self._step_ns) if self._prev_ns else self._step_ns
        self._prev_ns = now_ns
        active = self.counters.array[self._running_index] + batch.completed
        self._last_active = active
        if batch.drafts:
            self._last_al = (batch.accepted + batch.drafts) / batch.drafts
        else:
            self._last_al = 0.0
        self._pending.append((time.time(), self._iter, latency_ns / 1e6, active, batch.completed, batch.prefill,
                              batch.decode, batch.ctx_tokens, batch.decode_tokens, batch.drafts, batch.draft_tokens,
                              batch.accepted))

    def on_request_end(self, gen, outcome: str, now_ns: int) -> None:
        """1.2's per-request metrics of a request that finished (openai_server.py hands the collector
        each finished request's metrics dict; MetricsCollector.log_metrics_dict counts a success by its
        finish reason and observes the histograms, skipping a zero value). The emulator's requests
        all finish by length; the emulator never queues, so its queue time is 0 and is observed as
        such, which keeps the family in the output as a real server's always-positive queue time does."""
        if outcome != "requests_finished_length":
            return
        self._successes["length"] = self._successes.get("length", 0) + 1
        histograms = self._histograms
        histograms["e2e_request_latency_seconds"].observe((now_ns - gen.start_ns) / 1e9)
        histograms["time_to_first_token_seconds"].observe((gen.first_ns - gen.start_ns) / 1e9)
        if gen.emitted > 1:  # the time between the first token and the last, per later token
            histograms["time_per_output_token_seconds"].observe((now_ns - gen.first_ns) / 1e9 / (gen.emitted - 1))
        histograms["request_queue_time_seconds"].observe(0.0)

    def _iteration_json(self, entry: tuple) -> dict:
        (wall, it, latency_ms, active, completed, ctx, gen, ctx_tokens, gen_tokens, drafts, draft_tokens,
         accepted) = entry
        stats = {
            "timestamp": time.strftime("%m-%d-%Y %H:%M:%S", time.localtime(wall)),
            "iter": it, "iterLatencyMS": latency_ms, "newActiveRequestsQueueLatencyMS": 0.0,
            "numNewActiveRequests": ctx, "numActiveRequests": active, "numQueuedRequests": 0,
            "numCompletedRequests": completed, "maxNumActiveRequests": 2048, "maxBatchSizeStatic": 2048,
            "maxBatchSizeTunerRecommended": 0, "maxBatchSizeRuntime": 2048, "maxNumTokensStatic": 8192,
            "maxNumTokensTunerRecommended": 0, "maxNumTokensRuntime": 8192,
            "gpuMemUsage": 0, "cpuMemUsage": 0, "pinnedMemUsage": 0,
            "kvCacheStats": {"maxNumBlocks": 65536, "freeNumBlocks": 65536, "usedNumBlocks": 0, "tokensPerBlock": 32,
                             "allocTotalBlocks": 0, "allocNewBlocks": 0, "reusedBlocks": 0, "missedBlocks": 0,
                             "cacheHitRate": 0.0},
            "inflightBatchingStats": {"numScheduledRequests": ctx + gen, "numContextRequests": ctx,
                                      "numGenRequests": gen, "numPausedRequests": 0, "numCtxTokens": ctx_tokens,
                                      "microBatchId": 0,
                                      "avgNumDecodedTokensPerIter": gen_tokens / gen if gen else 0.0},
        }
        stats["specDecodingStats"] = {
            "numDraftTokens": draft_tokens, "numAcceptedTokens": accepted, "numRequestsWithDraftTokens": drafts,
            "acceptanceLength": (accepted + drafts) / drafts if drafts else 0.0,
            "iterLatencyMS": 0.0, "draftOverhead": 0.0} if self.speculative else None
        stats["staticBatchingStats"] = None
        return _sorted_keys(stats)

    def drain(self) -> list[dict]:
        """The iterations since the previous read, oldest first; the queue is left empty."""
        entries = list(self._pending)
        self._pending.clear()
        return [self._iteration_json(e) for e in entries]

    def _iteration_stats(self, conn, request) -> None:
        conn.respond_json(200, self.drain())

    def _perf_metrics(self, conn, request) -> None:
        conn.respond_json(200, [])  # per-request perf metrics need return_perf_metrics per request: none kept

    def prometheus_text(self) -> str:
        """prometheus_client's multiprocess exposition of the MetricsCollector at this server's
        version (see the module docstring), then the emulator's own lag lines."""
        totals = self.counters.totals()
        lines = self._prefixed_lines(totals) if self.engine_version == PREFIXED else self._request_lines()
        lines.extend(emulator_lag_lines(totals))
        return "\n".join(lines) + "\n"

    def _request_lines(self) -> list[str]:
        """1.2.1: the four per-request histograms and request_success_total, unprefixed, labelled
        "undefined" (metrics/collector.py before the trtllm_ prefix; real output in
        tests/unit/engines/real/trtllm/unknown-2026-03/). The finish-reason label is `finished_reason`,
        MetricsCollector.labelname_finish_reason, as vLLM's collector it was adapted from names it.
        Nothing before a request finished: prometheus_client's multiprocess collector writes only the
        label sets a process observed."""
        lines: list[str] = []
        if not self._successes:
            return lines
        for name, help_, _ in REQUEST_HISTOGRAMS:
            lines.extend(self._histograms[name].lines(name, help_, UNDEFINED_LABELS))
        first, last = UNDEFINED_LABELS.split(",", 1)
        prometheus_family(lines, "request_success_total", "counter", "Count of successfully processed requests.",
                          [(f'{first},finished_reason="{reason}",{last}', n)
                           for reason, n in sorted(self._successes.items())])
        return lines

    def _prefixed_lines(self, totals: dict[str, int]) -> list[str]:
        """1.3.0rc: the trtllm_* counters and gauges, labels sorted, counters keeping their _total
        name. The counters here grow at every step (TRT-LLM feeds them from the iteration stats and,
        per position, when a request finishes)."""
        labels = f'engine_type="trtllm",model_name="{self.config.model}"'
        lines: list[str] = []
        prometheus_family(lines, "trtllm_num_requests_running", "gauge", "Number of active requests",
                          [(labels, self._last_active)])
        prometheus_family(lines, "trtllm_num_requests_waiting", "gauge", "Number of queued requests", [(labels, 0)])
        prometheus_family(lines, "trtllm_prompt_tokens_total", "counter",
                          "Cumulative number of prompt (input) tokens processed.", [(labels, totals["prompt_tokens"])])
        prometheus_family(lines, "trtllm_generation_tokens_total", "counter",
                          "Cumulative number of generation (output) tokens produced.",
                          [(labels, totals["generation_tokens"])])
        prometheus_family(lines, "trtllm_request_success_total", "counter", "Count of successfully processed requests.",
                          [(labels + ',finished_reason="length"', totals["requests_finished_length"])])
        if self.speculative:
            prometheus_family(lines, "trtllm_spec_decode_num_draft_tokens_total", "counter",
                              "Total number of draft tokens in speculative decoding",
                              [(labels, totals["spec_draft_tokens"])])
            prometheus_family(lines, "trtllm_spec_decode_num_accepted_tokens_total", "counter",
                              "Total number of accepted tokens in speculative decoding",
                              [(labels, totals["spec_accepted_tokens"])])
            prometheus_family(lines, "trtllm_spec_decode_acceptance_length", "gauge",
                              "Acceptance length in speculative decoding", [(labels, self._last_al)])
            prometheus_family(lines, "trtllm_spec_decode_draft_overhead", "gauge",
                              "Draft overhead in speculative decoding", [(labels, 0.0)])
            prometheus_family(lines, "trtllm_spec_decode_drafted_tokens_total", "counter",
                              "Total drafted tokens per speculative decoding position.",
                              [(labels + f',token_position="{i}"', totals["spec_drafts"])
                               for i in range(self.draft_len)])
            prometheus_family(lines, "trtllm_spec_decode_accepted_tokens_total", "counter",
                              "Total accepted tokens per speculative decoding position.",
                              [(labels + f',token_position="{i}"', n)
                               for i, n in enumerate(self.counters.per_position(totals))])
        return lines

    def _prometheus(self, conn, request) -> None:
        self.respond_text(conn, self.prometheus_text())


def _sorted_keys(value):
    """An iteration entry as the executor's JSON writer orders it: keys sorted at every level (seen in
    a real 1.0.0rc4 entry, tests/unit/engines/real/trtllm/1.0.0rc4/)."""
    return {k: _sorted_keys(value[k]) for k in sorted(value)} if isinstance(value, dict) else value
