"""HTTP/SSE transport: bytes in, timestamped SSE payloads out."""

from .client import ExchangeError, HttpClient, TransportError
from .lag import ReadLag
from .sse import SSEError, SSEParser

__all__ = ["ExchangeError", "HttpClient", "ReadLag", "SSEError", "SSEParser", "TransportError"]
