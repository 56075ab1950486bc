"""What a server serves, asked the same way by a run's handshake and by `loadgen probe`."""

from __future__ import annotations

import orjson

from ..engines import EngineAdapter
from ..engines.server_metrics import fetch_json
from ..errors import ServerError, ServerNotReady
from ..transport import HttpClient, ProxyUnusable, TransportError

__all__ = ["served_models", "engine_version"]


async def served_models(client: HttpClient, url: str) -> tuple[dict, list[str]]:
    """GET /v1/models: its body and the ids of the models served, or one clear error (unreachable, a
    bad key, not an OpenAI-compatible server, no model); ServerNotReady on 429 or 5xx (loading)."""
    try:
        status, body = await client.get("/v1/models")
    except ProxyUnusable as exc:
        raise ServerError(f"{exc}; check --proxy (or HTTP_PROXY, HTTPS_PROXY and NO_PROXY)") from exc
    except TransportError as exc:
        raise ServerError(f"{exc}; check --url and that the server is up") from exc
    if status in (401, 403):
        # tinyproxy answers wrong proxy credentials with 401, not 407: through a proxy it may be either's
        proxy = f", or the credentials of proxy {client.proxy.shown} (from {client.proxy.source})" \
            if client.proxy is not None and client.proxy.auth_header else ""
        raise ServerError(f"GET /v1/models: HTTP {status}; check --api-key (or LOADGEN_API_KEY){proxy}")
    if status == 429 or status >= 500:
        raise ServerNotReady(f"GET /v1/models: HTTP {status}")
    try:
        models = orjson.loads(body) if status == 200 else {}
        ids = [str(m["id"]) for m in models["data"]]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise ServerError(f"{url} is not an OpenAI-compatible server: GET /v1/models gave HTTP {status} "
                          "without a model list; check --url (the server root, without /v1)") from None
    if not ids:
        raise ServerError(f"{url}/v1/models lists no models")
    return models, ids


async def engine_version(client: HttpClient, adapter: EngineAdapter) -> str | None:
    """The version the engine gives at its version endpoint, where it has one and answers."""
    if adapter.version_endpoint is None:
        return None
    path, key = adapter.version_endpoint
    body = await fetch_json(client.get, path)
    value = body.get(key) if isinstance(body, dict) else None
    return str(value) if value else None
