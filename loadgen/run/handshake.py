"""Before the load: find the server's model and engine, and send one tiny request, retried while
the server answers but is not ready yet, so that a wrong --url, key or engine is one clear error
rather than a run of N failed requests."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import orjson
from rich.console import Console

from ..config import RunConfig
from ..engines import ENGINES, EngineAdapter, detect_engine, get_adapter
from ..errors import ServerError, ServerNotReady, UsageError
from ..records import RequestRecord, StreamRecorder
from ..sinks import print_figure_warnings
from ..transport import ExchangeError, HttpClient
from ..workloads import Prompt
from .discovery import served_models
from .probe import run_findings

__all__ = ["Served", "until_serving"]


@dataclass(frozen=True)
class Served:
    """What the server serves, as the run will address it."""

    model: str
    engine: str
    adapter: EngineAdapter
    #: the longest prompt + output the server takes, where /v1/models says (EngineAdapter.context_length)
    context_length: int | None = None


async def until_serving(client: HttpClient, config: RunConfig, url: str, first_prompt: Prompt,
                        console: Console) -> Served:
    """Discovery and the preflight request, retried with backoff while the server answers but is
    not ready (429, 5xx, a failed stream: an engine still loading, or overloaded), for up to
    --startup-wait seconds. Anything else (unreachable, 404, a bad key) fails at once. Then the
    probe's findings that change the figures (`loadgen probe`), printed once, before the warm-up."""
    deadline = time.monotonic() + config.startup_wait_s
    delay = 0.5
    while True:
        try:
            model, engine, entry = await _discover(client, config, url)
            adapter = get_adapter(engine)
            await _preflight(client, config, url, adapter, model, first_prompt)
            print_figure_warnings(console, await run_findings(client, adapter))
            return Served(model, engine, adapter, adapter.context_length(entry))
        except ServerNotReady as exc:
            if time.monotonic() + delay > deadline:
                raise ServerError(f"{exc}; the server was not ready within {config.startup_wait_s:g} s "
                                  "(--startup-wait)") from None
            console.print(f"[yellow]server not ready ({exc}); retrying in {delay:.1f} s[/]")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def _discover(client: HttpClient, config: RunConfig, url: str) -> tuple[str, str, dict]:
    """The model to request, the engine, and the model's /v1/models entry."""
    models, ids = await served_models(client, url)
    model = config.model or ids[0]
    if config.model and config.model not in ids:
        raise UsageError(f"model {config.model!r} is not served at {url}; it serves: {', '.join(ids)}")
    engine = config.engine
    if engine == "auto":
        engine = detect_engine(models)
    elif engine not in ENGINES:
        raise UsageError(f"unknown --engine {engine!r}; choose auto or one of {', '.join(ENGINES)}")
    return model, engine, models["data"][ids.index(model)]


def _preflight_body(config: RunConfig, adapter: EngineAdapter, model: str, first_prompt: Prompt) -> dict:
    """Two output tokens for a prompt of the run's kind: its first token id, or a few words of its
    first user message (as chat messages, or as text)."""
    if not config.sends_text:
        return adapter.request_body(model=model, prompt=[int(first_prompt.token_ids[0])], max_tokens=2,
                                    temperature=config.temperature, ignore_eos=True)
    words = " ".join(str(first_prompt.messages[-1]["content"]).split()[:8]) or "Hello"
    if config.endpoint == "chat":
        return adapter.chat_body(model=model, messages=[{"role": "user", "content": words}], max_tokens=2,
                                 temperature=config.temperature, ignore_eos=True)
    return adapter.request_body(model=model, prompt=words, max_tokens=2, temperature=config.temperature,
                                ignore_eos=True)


def _refusal_hint(config: RunConfig, url: str, status: int | None, message: str) -> str:
    """What to do about a 4xx on the first request, for the route and prompt kind it used."""
    path = config.path
    if status in (404, 405):
        if config.endpoint == "chat":
            return (f"the server does not serve POST {path} (HTTP {status}): use --endpoint completions, or check "
                    "--url is the server root")
        return (f"is --url the server root? POST {url}{path} was not found (HTTP {status}); a server that serves "
                "only chat takes --endpoint chat")
    if status in (401, 403):
        return "check --api-key (or LOADGEN_API_KEY)"
    if status == 400 and not config.sends_text:
        return (f"the server refused a token-id prompt ({message[:160]}); send text: --prompt-format text, or "
                "--endpoint chat")
    return ""


async def _preflight(client: HttpClient, config: RunConfig, url: str, adapter: EngineAdapter, model: str,
                     first_prompt: Prompt) -> None:
    """One tiny request before the run, so a wrong endpoint is one clear error, not N failures."""
    body = orjson.dumps(_preflight_body(config, adapter, model, first_prompt))
    # only whether the stream fails matters here, so even an estimated chat stream needs no tokenizer
    recorder = StreamRecorder(RequestRecord(-1, "preflight", 0, 1, 2, 0), adapter, chat=config.endpoint == "chat")
    try:
        await client.stream(config.path, body, recorder.on_event, lambda t: None)
    except ExchangeError as exc:
        refused = exc.status is not None and (300 <= exc.status < 400 or 400 <= exc.status < 500 and exc.status != 429)
        if exc.kind != "connect" and not refused:
            raise ServerNotReady(f"the first request failed: {exc}") from None
        hint = _refusal_hint(config, url, exc.status, str(exc))
        raise ServerError(f"the first request failed: {exc}" + (f"; {hint}" if hint else "")) from exc
    record = recorder.finish(None)
    if record.error is not None:
        raise ServerNotReady(f"the first request failed: {record.error.kind}: {record.error.message}")
