"""vLLM's wire format, as read from its source (see ENGINES.md): request fields, chunk
shapes, the final usage chunk, /v1/models and the Prometheus names of /metrics."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from .engine import (
    CATEGORY_HEADER,
    GenerationParams,
    Personality,
    RequestRejected,
    emulator_lag_lines,
    error_type,
    max_tokens_of,
    prometheus_family,
    prompt_token_count,
    sse,
    usage_dict,
)

__all__ = ["GenerationParams", "RequestRejected", "parse_completion_request", "StreamEncoder",
           "usage_chunk", "completion_body", "models_body", "metrics_text", "error_body", "Vllm"]


def error_body(status: int, message: str) -> dict:
    return {"error": {"message": message, "type": error_type(status), "param": None, "code": status}}


def parse_completion_request(body: object, served_model: str,
                             headers: dict[str, str] | None = None) -> GenerationParams:
    if not isinstance(body, dict):
        raise RequestRejected(400, "request body must be a JSON object")
    model = body.get("model", served_model)
    if model != served_model:
        raise RequestRejected(404, f"The model `{model}` does not exist.")
    prompt_tokens = prompt_token_count(body.get("prompt"))
    if prompt_tokens is None:
        raise RequestRejected(400, "prompt must be a non-empty string or list of token ids")
    max_tokens = max_tokens_of(body)
    options = body.get("stream_options") or {}
    return GenerationParams(
        model=model,
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        stream=bool(body.get("stream", False)),
        include_usage=bool(options.get("include_usage", False)),
        continuous_usage=bool(options.get("include_usage") and options.get("continuous_usage_stats")),
        return_token_ids=bool(body.get("return_token_ids", False)),
        ignore_eos=bool(body.get("ignore_eos", False)),
        category=(headers or {}).get(CATEGORY_HEADER),
    )


class StreamEncoder:
    """One request's stream chunks as bytes. Only text, token ids, finish reason and counts change
    from chunk to chunk, so the rest is encoded once; orjson-equal to dumping the chunk dict."""

    __slots__ = ("_head", "_usage", "_ids", "_tail", "_pt")

    per_token = False

    def __init__(self, rid: str, created: int, params: GenerationParams) -> None:
        self._head = (b'{"id":' + orjson.dumps(rid) + b',"object":"text_completion","created":%d,"model":' % created
                      + orjson.dumps(params.model) + b',"choices":[{"index":0,"text":')
        self._usage = (b',"usage":{"prompt_tokens":%d,"completion_tokens":%%d,"total_tokens":%%d}'
                       % params.prompt_tokens if params.continuous_usage else None)
        self._ids = params.return_token_ids
        self._tail = (rid, created, params)
        self._pt = params.prompt_tokens

    def chunk(self, text: str, token_ids: list[int], finish_reason: str | None, completion_tokens: int,
              prompt_tokens: int, extra: bytes = b"") -> bytes:
        """`extra` is inserted as further top-level fields (`,"key":value...`)."""
        finish = b"null" if finish_reason is None else b'"' + finish_reason.encode() + b'"'
        ids = orjson.dumps(token_ids) if self._ids else b"null"
        out = (self._head + orjson.dumps(text) + b',"logprobs":null,"finish_reason":' + finish
               + b',"stop_reason":null,"prompt_token_ids":null,"token_ids":' + ids + b"}]")
        if self._usage is not None:
            out += self._usage % (completion_tokens, prompt_tokens + completion_tokens)
        return out + extra + b"}"

    def events(self, text: str, token_ids: list[int], finish_reason: str | None, completion_tokens: int,
               steps: int, extra: bytes = b"") -> bytes:
        # chunk() inlined: this runs once per chunk of every stream
        finish = b"null" if finish_reason is None else b'"' + finish_reason.encode() + b'"'
        ids = orjson.dumps(token_ids) if self._ids else b"null"
        out = (b"data: " + self._head + orjson.dumps(text) + b',"logprobs":null,"finish_reason":' + finish
               + b',"stop_reason":null,"prompt_token_ids":null,"token_ids":' + ids + b"}]")
        if self._usage is not None:
            out += self._usage % (completion_tokens, self._pt + completion_tokens)
        return out + extra + b"}\n\n"

    def tail(self, gen, now_ns: int) -> bytes:
        rid, created, params = self._tail
        out = sse(usage_chunk(rid, created, params, gen.emitted)) if params.include_usage else b""
        return out + b"data: [DONE]\n\n"


def usage_chunk(rid: str, created: int, params: GenerationParams, completion_tokens: int) -> dict:
    return {"id": rid, "object": "text_completion", "created": created, "model": params.model,
            "choices": [], "usage": usage_dict(params, completion_tokens)}


def completion_body(rid: str, created: int, params: GenerationParams, text: str, token_ids: list[int],
                    finish_reason: str, completion_tokens: int) -> dict:
    return {"id": rid, "object": "text_completion", "created": created, "model": params.model,
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason,
                         "stop_reason": None, "prompt_token_ids": None,
                         "token_ids": token_ids if params.return_token_ids else None}],
            "usage": usage_dict(params, completion_tokens)}


def models_body(model: str, created: int, max_model_len: int) -> dict:
    return {"object": "list", "data": [{"id": model, "object": "model", "created": created, "owned_by": "vllm",
                                         "root": model, "parent": None, "max_model_len": max_model_len}]}


def metrics_text(totals: dict[str, int], per_position: Sequence[int], model: str, speculative: bool) -> str:
    labels = f'engine="0",model_name="{model}"'
    lines: list[str] = []

    def family(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
        prometheus_family(lines, name, kind, help_, samples, fmt=lambda v: f"{v:.1f}")

    family("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.",
           [(labels, totals["requests_running"])])
    family("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.", [(labels, 0)])
    family("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.",
           [(labels, totals["prompt_tokens"])])
    family("vllm:generation_tokens_total", "counter", "Number of generation tokens processed.",
           [(labels, totals["generation_tokens"])])
    family("vllm:request_success_total", "counter", "Count of successfully processed requests.",
           [(labels + ',finished_reason="length"', totals["requests_finished_length"]),
            (labels + ',finished_reason="stop"', totals["requests_finished_stop"]),
            (labels + ',finished_reason="abort"', totals["requests_aborted"])])
    if speculative:
        family("vllm:spec_decode_num_drafts_total", "counter", "Number of spec decoding drafts.",
               [(labels, totals["spec_drafts"])])
        family("vllm:spec_decode_num_draft_tokens_total", "counter", "Number of draft tokens.",
               [(labels, totals["spec_draft_tokens"])])
        family("vllm:spec_decode_num_accepted_tokens_total", "counter", "Number of accepted tokens.",
               [(labels, totals["spec_accepted_tokens"])])
        family("vllm:spec_decode_num_accepted_tokens_per_pos_total", "counter",
               "Accepted tokens per draft position.",
               [(labels + f',position="{i}"', n) for i, n in enumerate(per_position)])
    lines.extend(emulator_lag_lines(totals))
    return "\n".join(lines) + "\n"


class Vllm(Personality):
    """`vllm serve`: OpenAI completions plus return_token_ids; Prometheus /metrics."""

    name = "vllm"
    owned_by = "vllm"
    uses_batches = False  # nothing on vLLM's /metrics is per batch

    def parse_request(self, body: object, headers: dict[str, str]) -> GenerationParams:
        return parse_completion_request(body, self.config.model, headers)

    def stream_encoder(self, rid: str, created: int, params: GenerationParams) -> StreamEncoder:
        return StreamEncoder(rid, created, params)

    def completion_body(self, gen, text: str, ids: list[int], finish: str, now_ns: int) -> dict:
        return completion_body(gen.rid, gen.created, gen.params, text, ids, finish, gen.emitted)

    def models_body(self) -> dict:
        return models_body(self.config.model, self.created, self.config.max_model_len)

    def error_body(self, status: int, message: str) -> dict:
        return error_body(status, message)

    def error_event(self, status: int, message: str) -> bytes | None:
        return sse(error_body(status, message)) + b"data: [DONE]\n\n"  # the body is already {"error": {...}}

    def routes(self):
        return {**super().routes(), ("GET", "/metrics"): self._metrics}

    def _metrics(self, conn, request) -> None:
        totals = self.counters.totals()
        self.respond_text(conn, metrics_text(totals, self.counters.per_position(totals), self.config.model,
                                             speculative=self.speculative))
