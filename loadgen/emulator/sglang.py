"""SGLang's wire format (python -m sglang.launch_server, OpenAI /v1/completions), as read from its
source (python/sglang/srt/entrypoints/openai/serving_completions.py, protocol.py, http_server.py,
managers/scheduler_metrics_mixin.py, metrics/collector.py):

- chunks carry `matched_stop` (no `stop_reason`, no token ids), `"usage": null` unless
  `stream_options.continuous_usage_stats` (which does NOT need include_usage), and the request's own
  `model` string; unknown request fields are ignored; a final `choices: []` usage chunk (dumped
  without null fields) when include_usage.
- /metrics: the scheduler's GAUGES `sglang:spec_accept_length` and `sglang:spec_accept_rate` (no
  counters), `sglang:num_running_reqs`, `sglang:num_queue_reqs`, `sglang:gen_throughput`, labelled
  engine_type, model_name, moe_ep_rank, pp_rank, tp_rank (labels in the alphabetical order
  prometheus_client's multiprocess collector writes them); the tokenizer manager's counters
  `sglang:prompt_tokens_total`, `sglang:generation_tokens_total` (label model_name).
- GET /server_info (and the deprecated /get_server_info): server args, scheduler info and
  `internal_states[i].avg_spec_accept_length`, cumulative since start.
- /v1/chat/completions (serving_chat.py _generate_chat_stream, _generate_stream_content,
  _build_chat_response; sse_utils.py build_sse_content): chunks are msgspec StreamChunk structs,
  `usage` left out unless continuous_usage_stats, the delta's unset fields left out, the choice's
  `logprobs`, `finish_reason`, `matched_stop` always written. A first chunk with
  `{"role":"assistant","content":""}`; per step a `reasoning_content` chunk (with --reasoning-parser;
  here --reasoning-tokens) and/or a `content` chunk, both with finish_reason null; then a separate
  chunk with an empty delta and the finish reason; then, with include_usage, a pydantic-dumped
  `choices: []` chunk whose usage has `reasoning_tokens`; then [DONE]. The non-streaming body and
  the usage chunk follow protocol.py's ChatCompletionResponse (id, object, created, model, choices,
  usage, metadata), ChatMessage (role, content, reasoning_content, tool_calls) and
  ChatCompletionStreamResponse (sglext dropped when None).
"""

from __future__ import annotations

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
    max_tokens_of,
    prometheus_family,
    prompt_token_count,
    reasoning_count,
    split_reasoning,
    temperature_of,
    usage_suffix,
)

__all__ = ["Sglang", "StreamEncoder", "ChatStreamEncoder", "DECODE_LOG_INTERVAL"]

#: SGLang's --decode-log-interval default: the scheduler recomputes its spec gauges every 40 decode batches
DECODE_LOG_INTERVAL = 40
#: --max-running-requests as the server reports it (the real body's value, for a small model)
MAX_RUNNING_REQUESTS = 128
DEFAULT_MODEL_NAME = "default"  # what SGLang's CompletionRequest.model defaults to
VERSION = "0.0.0+loadgen.emulator"


def _usage(prompt_tokens: int, completion_tokens: int, reasoning_tokens: int = 0,
           cached_tokens: int | None = None) -> dict:
    """UsageInfo field order: prompt_tokens, total_tokens, completion_tokens, prompt_tokens_details,
    reasoning_tokens. With --prefix-cache, as a server started with --enable-cache-report answers:
    prompt_tokens_details {cached_tokens} only where some were cached (sgl-project/sglang
    python/sglang/srt/entrypoints/openai/usage_processor.py, UsageProcessor._details_if_cached)."""
    details = {"cached_tokens": cached_tokens} if cached_tokens else None
    return {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + completion_tokens,
            "completion_tokens": completion_tokens, "prompt_tokens_details": details,
            "reasoning_tokens": reasoning_tokens}


class StreamEncoder:
    """CompletionStreamResponse.model_dump_json() of one chunk, with the constant parts pre-encoded."""

    __slots__ = ("_head", "_usage", "_params", "_rid", "_created")

    per_token = False

    def __init__(self, rid: str, created: int, params: GenerationParams) -> None:
        self._head = (b'{"id":' + orjson.dumps(rid) + b',"object":"text_completion","created":%d,"model":' % created
                      + orjson.dumps(params.model) + b',"choices":[{"index":0,"text":')
        p = params.prompt_tokens
        self._usage = (b',"usage":{"prompt_tokens":%d,"total_tokens":%%d,"completion_tokens":%%d,'
                       b'"prompt_tokens_details":null,"reasoning_tokens":0}' % p if params.continuous_usage else None)
        self._params, self._rid, self._created = params, rid, created

    def events(self, text: str, token_ids: list[int], finish_reason: str | None, completion_tokens: int,
               steps: int, extra: bytes = b"") -> bytes:
        finish = b"null" if finish_reason is None else b'"' + finish_reason.encode() + b'"'
        out = (b"data: " + self._head + orjson.dumps(text) + b',"logprobs":null,"finish_reason":' + finish
               + b',"matched_stop":null}]')
        out += usage_suffix(self._usage, self._params.prompt_tokens, completion_tokens)
        return out + extra + b"}\n\n"

    def tail(self, gen, now_ns: int) -> bytes:
        out = b""
        if self._params.include_usage:
            usage = _usage(self._params.prompt_tokens, gen.emitted, cached_tokens=self._params.cached_tokens)
            if usage["prompt_tokens_details"] is None:
                del usage["prompt_tokens_details"]  # the final usage chunk is dumped with exclude_none
            out = b"data: " + orjson.dumps({"id": self._rid, "object": "text_completion", "created": self._created,
                                            "model": self._params.model, "choices": [], "usage": usage}) + b"\n\n"
        return out + b"data: [DONE]\n\n"


class ChatStreamEncoder(ChatEncoderState):
    """One chat request's chunks (build_sse_content), the constant parts pre-encoded."""

    __slots__ = ()

    def __init__(self, rid: str, created: int, params: GenerationParams) -> None:
        super().__init__(rid, created, params, b'"prompt_tokens_details":null,"reasoning_tokens":%d}', sse_prefix=True)

    def _chunk(self, delta: bytes, usage: bytes, extra: bytes) -> bytes:
        return (self._head + delta + b',"logprobs":null,"finish_reason":null,"matched_stop":null}]' + usage + extra
                + b"}\n\n")

    def events(self, texts: list[str], token_ids: list[int], finish_reason: str | None, completion_tokens: int,
               steps: int, extra: bytes = b"") -> bytes:
        """The finish reason goes on a chunk of its own (tail), not on these."""
        out = b""
        if self._first:
            self._first = False
            out = self._chunk(b'{"role":"assistant","content":""}', b"", extra)
        usage = (self._usage % (self._params.prompt_tokens + completion_tokens, completion_tokens,
                                min(self._reasoning, completion_tokens)) if self._usage is not None else b"")
        reasoning, content = split_reasoning(texts, completion_tokens, self._reasoning)
        if reasoning:
            out += self._chunk(b'{"reasoning_content":' + orjson.dumps(reasoning) + b"}", usage, extra)
        if content:
            out += self._chunk(b'{"content":' + orjson.dumps(content) + b"}", usage, extra)
        return out

    def tail(self, gen, now_ns: int) -> bytes:
        params = self._params
        out = self._head + b'{},"logprobs":null,"finish_reason":"length","matched_stop":null}]}\n\n'
        if params.include_usage:
            out += b"data: " + orjson.dumps({
                "id": self._rid, "object": "chat.completion.chunk", "created": self._created, "model": params.model,
                "choices": [],
                "usage": _usage(params.prompt_tokens, gen.emitted, reasoning_count(params, gen.emitted))}) + b"\n\n"
        return out + b"data: [DONE]\n\n"


class Sglang(Personality):
    """SGLang personality. Its spec gauges are windowed like the real scheduler's (see on_batch)."""

    name = "sglang"
    #: the recipes' pin
    versions = ("0.5.9",)
    owned_by = "sglang"
    gauges = ("spec_accept_length", "spec_accept_rate", "gen_throughput")

    def __init__(self, config, counters, worker) -> None:
        super().__init__(config, counters, worker)
        self._window_ns = DECODE_LOG_INTERVAL * int(config.nominal_step_ms * 1e6)
        self._win_start: int | None = None
        self._win_drafts = self._win_accepted = self._win_tokens = 0

    # -- requests ------------------------------------------------------------------------------
    def parse_request(self, body: object, headers: dict[str, str]) -> GenerationParams:
        if not isinstance(body, dict):
            raise RequestRejected(400, "request body must be a JSON object")
        prompt = body.get("prompt")
        if not prompt:
            raise RequestRejected(400, "Prompt cannot be empty")
        prompt_tokens = prompt_token_count(prompt)
        if prompt_tokens is None:
            raise RequestRejected(400, "the emulator serves one prompt per request (a string or a list of token ids)")
        return self._params(body, headers, prompt_tokens, max_tokens_of(body), chat=False)

    def parse_chat_request(self, body: object, headers: dict[str, str]) -> GenerationParams:
        """ChatCompletionRequest: `messages` (serving_chat.py _validate_request: "Messages cannot be
        empty."), max_completion_tokens before max_tokens."""
        if not isinstance(body, dict):
            raise RequestRejected(400, "request body must be a JSON object")
        if not body.get("messages"):
            raise RequestRejected(400, "Messages cannot be empty.")
        prompt_tokens = chat_prompt_token_count(body["messages"])
        if prompt_tokens is None:
            raise RequestRejected(400, "messages must be a list of message objects")
        if body.get("max_completion_tokens") is not None:
            body = {**body, "max_tokens": body["max_completion_tokens"]}
        return self._params(body, headers, prompt_tokens, max_tokens_of(body), chat=True)

    def _params(self, body: dict, headers: dict[str, str], prompt_tokens: int, max_tokens: int,
                chat: bool) -> GenerationParams:
        model = body.get("model", DEFAULT_MODEL_NAME)
        if not isinstance(model, str):
            raise RequestRejected(400, "model must be a string")
        options = body.get("stream_options") or {}
        if not isinstance(options, dict):
            raise RequestRejected(400, "stream_options must be an object")
        return GenerationParams(model=model, prompt_tokens=prompt_tokens, max_tokens=max_tokens,
                                stream=bool(body.get("stream", False)),
                                include_usage=bool(options.get("include_usage", False)),
                                continuous_usage=bool(options.get("continuous_usage_stats", False)),
                                return_token_ids=False, ignore_eos=bool(body.get("ignore_eos", False)),
                                category=headers.get(CATEGORY_HEADER), chat=chat,
                                reasoning_tokens=self.config.reasoning_tokens if chat else 0,
                                temperature=temperature_of(body))

    # -- responses -----------------------------------------------------------------------------
    def stream_encoder(self, rid: str, created: int, params: GenerationParams) -> StreamEncoder:
        return StreamEncoder(rid, created, params)

    def completion_body(self, gen, text: str, ids: list[int], finish: str, now_ns: int) -> dict:
        params = gen.params
        return {"id": gen.rid, "object": "text_completion", "created": gen.created, "model": params.model,
                "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish,
                             "matched_stop": None}],
                "usage": _usage(params.prompt_tokens, gen.emitted, cached_tokens=params.cached_tokens),
                "metadata": {"weight_version": "default"}}

    def chat_stream_encoder(self, rid: str, created: int, params: GenerationParams) -> ChatStreamEncoder:
        return ChatStreamEncoder(rid, created, params)

    def chat_body(self, gen, now_ns: int) -> dict:
        """ChatCompletionResponse (_build_chat_response): content "" rather than null, reasoning_content
        null when there is none."""
        params = gen.params
        reasoning, content = split_reasoning(gen.texts, gen.emitted, params.reasoning_tokens)
        return {"id": gen.rid, "object": "chat.completion", "created": gen.created, "model": params.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content,
                                                     "reasoning_content": reasoning or None, "tool_calls": None},
                             "logprobs": None, "finish_reason": "length", "matched_stop": None}],
                "usage": _usage(params.prompt_tokens, gen.emitted, reasoning_count(params, gen.emitted)),
                "metadata": {"weight_version": "default"}}

    def models_body(self) -> dict:
        model = self.config.model
        return {"object": "list", "data": [{"id": model, "object": "model", "created": self.created,
                                             "owned_by": "sglang", "root": model, "parent": None,
                                             "max_model_len": self.config.max_model_len}]}

    def error_body(self, status: int, message: str) -> dict:
        return {"object": "error", "message": message, "type": error_type(status), "param": None, "code": status}

    # -- routes --------------------------------------------------------------------------------
    def routes(self):
        return {**super().routes(), ("GET", "/health_generate"): self._health,
                ("GET", "/metrics"): self._metrics, ("GET", "/server_info"): self._server_info,
                ("GET", "/get_server_info"): self._server_info}

    def on_batch(self, batch: BatchStats, now_ns: int) -> None:
        """SGLang's scheduler logs its decode stats every --decode-log-interval (40) decode batches and
        sets the gauges from the batches since the previous log:
            spec_accept_length = (accepted drafts + verify steps) / verify steps
            spec_accept_rate   = accepted drafts / proposed draft tokens
            gen_throughput     = decode tokens / seconds since the previous log.
        A firing of the emulator's step timer is not one batch of the whole server (requests arrive
        out of phase, so a step interval holds many firings), so the window is the wall time 40 real
        batches would take: consecutive, non-overlapping windows of 40 x --step-ms; when a decode
        step lands after a window has run that long, the window (that step included) sets the gauges,
        which then hold until the next window closes. Firings with no decode step are not counted,
        as prefill batches are not in SGLang. Each worker keeps its own window (like a DP rank).
        """
        if not batch.decode:
            return
        if self._win_start is None:
            self._win_start = now_ns
        self._win_drafts += batch.drafts
        self._win_accepted += batch.accepted
        self._win_tokens += batch.decode_tokens
        elapsed = now_ns - self._win_start
        if elapsed < self._window_ns:
            return
        counters = self.counters
        if self._win_drafts:
            counters.set_gauge("spec_accept_length", (self._win_accepted + self._win_drafts) / self._win_drafts)
            counters.set_gauge("spec_accept_rate", self._win_accepted / (self._win_drafts * self.draft_len))
        counters.set_gauge("gen_throughput", self._win_tokens / (elapsed / 1e9))
        self._win_start = now_ns
        self._win_drafts = self._win_accepted = self._win_tokens = 0

    def _labels(self, row: int) -> str:
        dp = f'dp_rank="{row}",' if self.counters.workers > 1 else ""
        return f'{dp}engine_type="unified",model_name="{self.config.model}",moe_ep_rank="0",pp_rank="0",tp_rank="0"'

    #: the radix tree matches token by token (page size 1 assumed: not checked at SGLang's source)
    cache_block_tokens = 1

    def cache_identity(self, body: dict) -> tuple[str | None] | None:
        """SGLang passes the request's cache_salt on to its cache key (sgl-project/sglang
        python/sglang/srt/entrypoints/openai/serving_completions.py, _convert_to_internal_request:
        GenerateReqInput(..., cache_salt=request.cache_salt))."""
        salt = body.get("cache_salt")
        return (salt if isinstance(salt, str) else None,)

    def metrics_text(self) -> str:
        counters = self.counters
        rows = range(counters.workers)
        totals = counters.totals()
        lines: list[str] = []

        def per_worker(key: str) -> list[tuple[str, float]]:
            return [(self._labels(r), counters.gauge(r, key) if key else 0) for r in rows]

        # num_running_reqs is read live (SGLang sets it at each log); the spec gauges are windowed
        prometheus_family(lines, "sglang:num_running_reqs", "gauge", "The number of running requests.",
                          [(self._labels(r), counters.row_totals(r)["requests_running"]) for r in rows])
        prometheus_family(lines, "sglang:num_queue_reqs", "gauge", "The number of requests in the waiting queue.",
                          per_worker(""))
        prometheus_family(lines, "sglang:gen_throughput", "gauge", "The generation throughput (token/s).",
                          per_worker("gen_throughput"))
        prometheus_family(lines, "sglang:token_usage", "gauge", "The token usage.", per_worker(""))
        prometheus_family(lines, "sglang:cache_hit_rate", "gauge", "The prefix cache hit rate.", per_worker(""))
        if self.speculative:
            prometheus_family(lines, "sglang:spec_accept_length", "gauge",
                              "The average acceptance length of speculative decoding.",
                              per_worker("spec_accept_length"))
            prometheus_family(lines, "sglang:spec_accept_rate", "gauge",
                              "The average acceptance rate of speculative decoding (`accepted tokens / total "
                              "draft tokens` in batch).",
                              per_worker("spec_accept_rate"))
        model = f'model_name="{self.config.model}"'
        prometheus_family(lines, "sglang:prompt_tokens_total", "counter", "Number of prefill tokens processed.",
                          [(model, totals["prompt_tokens"])])
        prometheus_family(lines, "sglang:generation_tokens_total", "counter",
                          "Number of generation tokens processed.", [(model, totals["generation_tokens"])])
        prometheus_family(lines, "sglang:num_requests_total", "counter", "Number of requests processed.",
                          [(model, totals["requests_finished_length"] + totals["requests_aborted"])])
        lines.extend(emulator_lag_lines(totals))
        return "\n".join(lines) + "\n"

    def _metrics(self, conn, request) -> None:
        self.respond_text(conn, self.metrics_text())

    def server_info(self) -> dict:
        """{**server_args, "status", "max_total_num_tokens", "max_req_input_len", "internal_states":
        [one per worker, like one per DP rank: the server args again and the scheduler's state],
        "version"}, as a real body of main 8 days after 0.5.9 has it (tests/unit/engines/real/sglang/
        main-2026-03-03-g753da2753/server_info.json; its 333 arguments, of which these are a few);
        avg_spec_accept_length = 1 + accepted / verify steps since start, only with speculation and once
        a draft has been verified (absent before, as in that body: speculation off)."""
        config, counters, k = self.config, self.counters, self.draft_len
        args = {"model_path": config.model, "tokenizer_path": config.model, "served_model_name": config.model,
                "host": config.host, "port": config.port, "tp_size": 1, "dp_size": counters.workers,
                "stream_interval": config.stream_interval, "enable_metrics": True,
                "decode_log_interval": DECODE_LOG_INTERVAL, "context_length": config.max_model_len,
                "max_running_requests": MAX_RUNNING_REQUESTS, "speculative_algorithm": "EAGLE3" if k else None,
                "speculative_num_steps": k or None, "speculative_eagle_topk": 1 if k else None,
                "speculative_num_draft_tokens": k + 1 if k else None}
        states = []
        for row in range(counters.workers):
            values = counters.row_totals(row)
            state = {**args, "use_mla_backend": False, "last_gen_throughput": counters.gauge(row, "gen_throughput"),
                     "memory_usage": {"weight": 0.0, "kvcache": 0.0, "token_capacity": config.max_model_len,
                                      "graph": 0.0},
                     "effective_max_running_requests_per_dp": MAX_RUNNING_REQUESTS}
            if k and values["spec_drafts"]:
                state["avg_spec_accept_length"] = 1 + values["spec_accepted_tokens"] / values["spec_drafts"]
            states.append(state)
        return {**args, "status": "ready", "max_total_num_tokens": config.max_model_len,
                "max_req_input_len": config.max_model_len - 1, "internal_states": states, "version": VERSION}

    def _server_info(self, conn, request) -> None:
        conn.respond_json(200, self.server_info())

