"""HTTP/SSE transport: bytes in, timestamped SSE payloads out."""

from .client import ExchangeError, HttpClient, TransportError
from .sse import SSEError, SSEParser

__all__ = ["ExchangeError", "HttpClient", "SSEError", "SSEParser", "TransportError"]
