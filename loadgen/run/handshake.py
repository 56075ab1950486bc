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
from ..sender import COMPLETIONS
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


async def _preflight(client: HttpClient, config: RunConfig, url: str, adapter: EngineAdapter, model: str,
                     first_prompt: Prompt) -> None:
    """One tiny request before the run, so a wrong endpoint is one clear error, not N failures."""
    first_id = int(first_prompt.token_ids[0])
    body = orjson.dumps(adapter.request_body(model=model, prompt=[first_id], max_tokens=2,
                                             temperature=config.temperature, ignore_eos=True))
    recorder = StreamRecorder(RequestRecord(-1, "preflight", 0, 1, 2, 0), adapter)
    try:
        await client.stream(COMPLETIONS, body, recorder.on_event, lambda t: None)
    except ExchangeError as exc:
        refused = exc.status is not None and (300 <= exc.status < 400 or 400 <= exc.status < 500 and exc.status != 429)
        if exc.kind != "connect" and not refused:
            raise ServerNotReady(f"the first request failed: {exc}") from None
        hint = {404: f"is --url the server root? POST {url}{COMPLETIONS} was not found",
                401: "check --api-key (or LOADGEN_API_KEY)", 403: "check --api-key (or LOADGEN_API_KEY)"}
        raise ServerError(f"the first request failed: {exc}" + (f"; {hint[exc.status]}" if exc.status in hint else
                                                                "")) from exc
    record = recorder.finish(None)
    if record.error is not None:
        raise ServerNotReady(f"the first request failed: {record.error.kind}: {record.error.message}")
