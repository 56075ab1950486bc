"""`loadgen probe URL`: before a run, what the server offers and what that means for the figures.

Each check is one Finding, "finding — consequence". What differs per engine (its version endpoint,
its own endpoints, which metrics mean a prefix cache, what its speculative counters mean) is asked
of the engine's adapter; this module holds the checks every engine shares: discovery, one tiny
streamed request with token ids, and the endpoint list. `loadgen run` repeats, from its handshake,
the findings that change its figures and need no request of their own (run_findings), before the
warm-up.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import orjson

from ..config import ENDPOINT_PATHS
from ..engines import FALLBACK_ENGINE, EngineAdapter, detect_engine, get_adapter
from ..engines.base import Finding
from ..engines.prometheus_text import Scrape
from ..engines.server_metrics import NO_SERVER_AL, fetch_text
from ..errors import UsageError
from ..sender import COMPLETIONS
from ..transport import ExchangeError, HttpClient, ProxyError, TransportError
from .discovery import engine_version, served_models
from .record import record_outputs

__all__ = ["probe", "probe_findings", "run_findings"]

#: token ids inside any vocabulary and past the special tokens most vocabularies put first
PROBE_TOKEN_IDS = [100, 101, 102, 103]
#: enough for a step after the first token to carry several tokens, short enough to cost nothing
PROBE_MAX_TOKENS = 4
CHAT_COMPLETIONS = ENDPOINT_PATHS["chat"]
#: endpoints every OpenAI-compatible engine may answer; each adapter adds its own
COMMON_ENDPOINTS = ("/health", "/v1/models", "/metrics", "/version")


@dataclass
class StreamSeen:
    """What the streamed token-id probe showed.

    counts: tokens per token-carrying chunk, where every chunk said (cumulative usage or token ids);
    None where some chunk did not. timings: llama.cpp's (draft_n, draft_n_accepted) from the final
    chunk, where given."""

    chunks: int = 0
    counts: list[int] | None = None
    timings: tuple[int, int] | None = None
    error: str | None = None


def probe(url: str, *, model: str | None, api_key: str | None, verify_tls: bool,
          proxy: str | None = None, record: Path | None = None) -> tuple[list[Finding], list[Path]]:
    """Every check against the server at URL (through `proxy`, as HttpClient takes it); ServerError
    when it cannot be reached or is not an OpenAI-compatible server, UsageError for a bad URL or
    proxy URL, or a model it does not serve. `record`: also write the server's outputs there as
    fixtures of its version (run/record.py); the files written come back with the findings."""
    try:
        client = HttpClient(url, api_key=api_key, timeout_s=60.0, connect_timeout_s=5.0, first_token_timeout_s=30.0,
                            idle_timeout_s=30.0, verify_tls=verify_tls, proxy=proxy)
    except ProxyError as exc:
        raise UsageError(str(exc)) from None
    except ValueError as exc:
        raise UsageError(f"{exc}; give the server root, e.g. http://127.0.0.1:8000") from None

    async def go() -> tuple[list[Finding], list[Path]]:
        try:
            findings, adapter, target = await probe_findings(client, url, model)
            return findings, [] if record is None else await record_outputs(client, adapter, target, record)
        finally:
            await client.close()

    return asyncio.run(go())


async def probe_findings(client: HttpClient, url: str,
                         model: str | None) -> tuple[list[Finding], EngineAdapter, str]:
    """The findings, with the adapter and model they were taken with (what --record records)."""
    models, ids = await served_models(client, url)
    served = [m for m in models["data"] if isinstance(m, dict)]
    if model is not None and model not in ids:
        raise UsageError(f"model {model!r} is not served at {url}; it serves: {', '.join(ids)}")
    engine = detect_engine(models)
    adapter = get_adapter(engine)
    target = model or ids[0]
    findings = [await _engine_finding(client, adapter, served), _models_finding(adapter, served, target)]
    seen, figures = await _figures(client, adapter, target)
    findings += figures
    findings.append(await _prefix_cache_finding(client, adapter))
    findings.append(await _endpoints_finding(client, adapter, target, seen))
    return findings, adapter, target


async def run_findings(client: HttpClient, adapter: EngineAdapter) -> list[Finding]:
    """What `loadgen run` warns of before its warm-up: how the adapter counts tokens per chunk, and
    what the server's speculative metrics are. No generation request: one would add to the server's
    counters and to the run's traffic; the preflight request has already shown that the endpoint
    streams. Never raises: a metrics endpoint that fails is a finding."""
    return [_token_counts_finding(adapter, exact=adapter.token_counts == "usage", failed=False),
            await adapter.speculative_metrics(client.get)]


async def _figures(client: HttpClient, adapter: EngineAdapter, model: str) -> tuple[StreamSeen, list[Finding]]:
    seen = await _stream_probe(client, adapter, model)
    speculative = await adapter.speculative_metrics(client.get)
    exact = seen.error is None and bool(seen.counts)
    return seen, [_token_ids_finding(seen), _token_counts_finding(adapter, exact=exact, failed=seen.error is not None),
                  _steps_finding(adapter, seen, speculative), speculative]


async def _engine_finding(client: HttpClient, adapter: EngineAdapter, served: list[dict]) -> Finding:
    owners = sorted({str(m.get("owned_by")) for m in served if m.get("owned_by")})
    version = await engine_version(client, adapter)
    named = f"{adapter.name} {version}" if version else f"{adapter.name}, version not given"
    finding = f"{named} (owned_by {', '.join(owners) or 'not given'})"
    if adapter.name == FALLBACK_ENGINE:
        return Finding("engine", finding, "no engine known to loadgen: --engine auto treats it as plain OpenAI")
    return Finding("engine", finding, f"--engine auto will use the {adapter.name} adapter")


def _models_finding(adapter: EngineAdapter, served: list[dict], target: str) -> Finding:
    described = []
    for model in served:
        length = adapter.context_length(model)
        described.append(f"{model['id']} (max length {length})" if length else str(model["id"]))
    length = next((adapter.context_length(m) for m in served if m["id"] == target), None)
    limit = (f"prompt + max tokens must fit in {length} tokens" if length else
             "no max length given: a prompt too long fails only at the server")
    return Finding("models", ", ".join(described), f"runs request {target} unless --model says otherwise; {limit}")


async def _stream_probe(client: HttpClient, adapter: EngineAdapter, model: str) -> StreamSeen:
    """One tiny streamed /v1/completions with `prompt` as token ids, as a run sends it."""
    body = orjson.dumps(adapter.request_body(model=model, prompt=PROBE_TOKEN_IDS, max_tokens=PROBE_MAX_TOKENS,
                                             temperature=0.0, ignore_eos=True))
    seen = StreamSeen(counts=[])
    cumulative = 0

    def on_event(t_ns: int, data: bytes) -> None:
        nonlocal cumulative
        try:
            fields = adapter.decode(data)
        except ValueError:
            seen.error = seen.error or "a malformed chunk"
            return
        if fields.error is not None:
            seen.error = fields.error
            return
        if fields.draft_tokens is not None:
            seen.timings = (fields.draft_tokens, fields.accepted_tokens or 0)
        if not fields.has_choice:
            return  # a usage-only chunk
        if fields.tokens is not None:
            tokens: int | None = fields.tokens
        elif fields.completion_tokens is not None and seen.counts is not None:
            tokens, cumulative = fields.completion_tokens - cumulative, fields.completion_tokens
        else:
            tokens = None
        if tokens is None:
            seen.counts = None
            if fields.text:
                seen.chunks += 1
        elif tokens > 0:
            seen.chunks += 1
            if seen.counts is not None:
                seen.counts.append(tokens)

    try:
        await client.stream(COMPLETIONS, body, on_event, lambda t_ns: None)
    except ExchangeError as exc:
        seen.error = str(exc)
    return seen


def _token_ids_finding(seen: StreamSeen) -> Finding:
    if seen.error is not None:
        return Finding("token-id prompts", f"a streamed prompt of token ids failed: {seen.error}",
                       "a run sends token ids: its requests will fail the same way", affects_figures=True)
    return Finding("token-id prompts", "accepted (a streamed /v1/completions with prompt as token ids)",
                   "prompts go out as the workload's token ids: input lengths are exact")


def _token_counts_finding(adapter: EngineAdapter, *, exact: bool, failed: bool) -> Finding:
    """exact: every chunk of the probe said its tokens (or, in a run, the adapter reads usage)."""
    if exact:
        return Finding("per-chunk token counts", "exact: cumulative usage (or token ids) on every chunk",
                       "AL from chunks will be exact")
    if adapter.token_counts == "one_per_token":
        return Finding("per-chunk token counts", "none, but the engine streams one chunk per token",
                       "steps are grouped from timings/gaps", affects_figures=True)
    found = "not seen (the probe failed)" if failed else "none: no cumulative usage or token ids on the chunks"
    return Finding("per-chunk token counts", found, "one token per chunk assumed: AL from chunks is a lower bound",
                   affects_figures=True)


def _steps_finding(adapter: EngineAdapter, seen: StreamSeen, speculative: Finding) -> Finding:
    if seen.error is not None:
        return Finding("steps per chunk", "not seen (the probe failed)", "cannot tell whether chunks merge steps")
    if seen.counts is None and adapter.token_counts == "one_per_token":
        drafts = (f"; its timings: {seen.timings[1]} of {seen.timings[0]} draft tokens accepted" if seen.timings
                  else "; no draft in its timings")
        return Finding("steps per chunk", f"one chunk per token ({seen.chunks} chunks){drafts}",
                       "steps are grouped from timings/gaps, never read from chunks")
    if not seen.counts:
        return Finding("steps per chunk", f"{seen.chunks} chunks, tokens per chunk unknown",
                       "cannot tell whether chunks merge steps")
    shape = ",".join(map(str, seen.counts))
    if max(seen.counts) == 1:
        why = ("the server counts drafts, but none was accepted in the probe's few steps (n-gram drafts nothing "
               "until the output repeats the context)" if speculative.consequence != NO_SERVER_AL
               else "no draft was accepted in the probe, so speculation is off or missed")
        return Finding("steps per chunk", f"one token per chunk ({shape})", f"one chunk per step; {why}")
    if speculative.consequence == NO_SERVER_AL:
        return Finding("steps per chunk", f"steps carry several tokens (tokens per chunk {shape}) with no "
                                          "speculative metrics", "the server may merge steps (stream interval > 1): "
                                                                 "tokens per chunk may not be acceptance lengths",
                       affects_figures=True)
    return Finding("steps per chunk", f"steps carry several tokens (tokens per chunk {shape})",
                   "one chunk per verify step while the server streams every step (stream interval 1): tokens per "
                   "chunk are acceptance lengths")


async def _prefix_cache_finding(client: HttpClient, adapter: EngineAdapter) -> Finding:
    path = adapter.metrics_path
    text = await fetch_text(client.get, path) if path else None
    found = sorted(Scrape(text).names() & set(adapter.prefix_cache_metrics)) \
        if text and adapter.prefix_cache_metrics else []
    if found:
        return Finding("prefix caching", f"{', '.join(found)} on {path}",
                       "repeated prompts will hit the cache: TTFT is not prefill")
    where = f"on {path}" if text else ("(metrics do not answer)" if path else "known for this engine")
    return Finding("prefix caching", f"no prefix-cache metrics {where}",
                   "cache hits cannot be seen: TTFT of repeated prompts may still skip prefill")


async def _endpoints_finding(client: HttpClient, adapter: EngineAdapter, model: str, seen: StreamSeen) -> Finding:
    statuses: dict[str, int | str] = {}
    for path in dict.fromkeys((*COMMON_ENDPOINTS, *adapter.own_endpoints)):
        try:
            statuses[path] = (await client.get(path))[0]
        except TransportError as exc:
            statuses[path] = exc.kind
    statuses[COMPLETIONS] = 200 if seen.error is None else "failed"
    chat = orjson.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1,
                         "stream": True})
    statuses[CHAT_COMPLETIONS] = await _post_status(client, CHAT_COMPLETIONS, chat)
    answers = [p for p, s in statuses.items() if s == 200]
    absent = [p for p, s in statuses.items() if s in (404, 405)]
    other = [f"{p} ({'HTTP ' + str(s) if isinstance(s, int) else s})" for p, s in statuses.items()
             if p not in answers and p not in absent]
    finding = "answers " + (", ".join(answers) or "nothing")
    finding += f"; absent: {', '.join(absent)}" if absent else ""
    finding += f"; failing: {', '.join(other)}" if other else ""
    metrics = [p for p in answers if "metrics" in p]
    consequence = ("a run streams /v1/completions" + (f" and reads {', '.join(metrics)}" if metrics else
                                                      ", with no server metrics to read"))
    return Finding("endpoints", finding, consequence)


async def _post_status(client: HttpClient, path: str, body: bytes) -> int | str:
    """The HTTP status of a streamed POST, or how it failed."""
    try:
        await client.stream(path, body, lambda t_ns, data: None, lambda t_ns: None)
    except ExchangeError as exc:
        return exc.status if exc.status is not None else exc.kind
    return 200
