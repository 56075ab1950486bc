"""HTTP/SSE transport: bytes in, timestamped SSE payloads out."""

from .client import ExchangeError, HttpClient, ProxyUnusable, TransportError
from .lag import ReadLag
from .proxy import ProxyError
from .sse import SSEError, SSEParser

__all__ = ["ExchangeError", "HttpClient", "ProxyError", "ProxyUnusable", "ReadLag", "SSEError", "SSEParser",
           "TransportError"]
