"""`loadgen probe URL --record DIR`: what the server sends, byte for byte, as fixtures of its version.

Engines rename their metrics between releases, and loadgen's adapters are checked against real
outputs of each version (tests/unit/engines/real/<engine>/, README "Across engine versions"). This
writes those outputs for the server at hand: its version and /v1/models answers, every body the
adapter reads speculative figures from, before and after one streamed /v1/completions sent as a
run sends it, and that stream's events; plus provenance.json in the fixtures' format, so a user
(or a session with a GPU) can add a version loadgen has not seen with one command. Nothing that
names the server (its URL, host, key) is written.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import orjson

import loadgen

from ..engines import EngineAdapter
from ..engines.server_metrics import fetch_text
from ..errors import UsageError
from ..sender import COMPLETIONS
from ..transport import ExchangeError, HttpClient
from .discovery import engine_version

__all__ = ["record_outputs", "RECORD_MAX_TOKENS"]

#: long enough for a speculating engine to show several multi-token steps
RECORD_MAX_TOKENS = 32
#: token ids inside any vocabulary and past the special tokens most vocabularies put first
RECORD_PROMPT = list(range(100, 132))


async def record_outputs(client: HttpClient, adapter: EngineAdapter, model: str, folder: Path) -> list[Path]:
    """Write the server's outputs into FOLDER (created; files there are replaced) and return them."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--record {folder}: cannot create it: {exc.strerror}") from None
    version = await engine_version(client, adapter)
    entries: list[dict] = []

    def keep(name: str, body: bytes, kind: str, endpoint: str, **extra) -> None:
        (folder / name).write_bytes(body)
        entries.append({"file": name, "engine": adapter.name, "version": version or "unknown",
                        "version_basis": (f"GET {adapter.version_endpoint[0]} answered {version}" if version and
                                          adapter.version_endpoint else "the server did not say"),
                        "kind": kind, "endpoint": endpoint, **extra})

    for path in ([adapter.version_endpoint[0]] if adapter.version_endpoint else []) + ["/v1/models"]:
        body = await fetch_text(client.get, path)
        if body is not None:
            keep(_file_name(path, body), body.encode(), "version" if path != "/v1/models" else "models",
                 f"GET {path}", speculative=None)
    await _keep_bodies(client, adapter, "before", keep)
    request = adapter.request_body(model=model, prompt=RECORD_PROMPT, max_tokens=RECORD_MAX_TOKENS, temperature=0.0,
                                   ignore_eos=True)
    events: list[bytes] = []
    try:
        await client.stream(COMPLETIONS, orjson.dumps(request), lambda t_ns, data: events.append(data),
                            lambda t_ns: None)
    except ExchangeError as exc:
        events.append(orjson.dumps({"loadgen_record_error": str(exc)}))
    keep("stream.sse", b"".join(b"data: " + e + b"\n\n" for e in events) + b"data: [DONE]\n\n", "stream",
         f"POST {COMPLETIONS}", speculative=None,
         request=f"as loadgen runs send it: {', '.join(k for k in request if k not in ('model', 'prompt'))}")
    await _keep_bodies(client, adapter, "after", keep)
    today = dt.date.today().isoformat()
    for entry in entries:
        entry.setdefault("speculative", None)
        entry["source"] = {"repository": "recorded with loadgen probe --record",
                           "url": f"loadgen {loadgen.__version__}", "where": f"a {adapter.name} server", "date": today}
        entry["excerpt"] = "whole body as received (a stream: each event's data as received, SSE-framed)"
    (folder / "provenance.json").write_bytes(orjson.dumps(entries, option=orjson.OPT_INDENT_2) + b"\n")
    return [folder / e["file"] for e in entries] + [folder / "provenance.json"]


async def _keep_bodies(client: HttpClient, adapter: EngineAdapter, when: str, keep) -> None:
    """Every body the adapter reads speculative figures from, with what loadgen reads of it."""
    for path in adapter.speculative_paths:
        body = await fetch_text(client.get, path)
        if body is None:
            continue
        reading = adapter.speculative_reading(path, body)
        is_json = body.lstrip()[:1] in ("{", "[")
        kind = ("server_info" if "info" in path else "iteration_stats") if is_json else (
            "metrics" if path == "/metrics" else "prometheus")
        keep(_file_name(path, body, when), body.encode(), kind, f"GET {path}",
             speculative=True if reading.read else None, note=f"loadgen read: {reading.describe()}")


def _file_name(path: str, body: str, when: str = "") -> str:
    """/prometheus/metrics + "before" -> prometheus-metrics-before.txt (.json for a JSON body)."""
    stem = re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-")
    suffix = ".json" if body.lstrip()[:1] in ("{", "[") else ".txt"
    return f"{stem}-{when}{suffix}" if when else f"{stem}{suffix}"
