"""A minimal HTTP/1.1 server on non-blocking sockets.

aiohttp's server costs a coroutine and a task wake-up per written chunk; at 512 streams and
20 ms steps that alone fills a core. Here a chunk is one send() called from the step
scheduler, and a request's arrival time is the kernel's receive stamp (loadgen.stamped_socket), so the
configured TTFT counts from when the bytes arrived, however busy this process was. Only what
OpenAI clients send is supported: Content-Length bodies, keep-alive, one request at a time per
connection (pipelined requests wait in the buffer).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from loadgen.stamped_socket import StampedSocket, enable_receive_timestamps

__all__ = ["Request", "Connection", "accept_connections", "MAX_HEAD_BYTES", "MAX_BODY_BYTES"]

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            405: "Method Not Allowed", 411: "Length Required", 413: "Payload Too Large",
            429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
            504: "Gateway Timeout"}


@dataclass(slots=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_ns: int  # when the read that completed the request returned: the arrival time

def accept_connections(listener: socket.socket, loop: asyncio.AbstractEventLoop,
                       handler: Callable[[Connection, Request], None],
                       on_connection: Callable[[Connection], None] | None = None) -> None:
    """Serve `listener` (already listening) until the loop stops or its reader is removed."""
    enable_receive_timestamps(listener)  # accepted sockets inherit it
    listener.setblocking(False)

    def accept() -> None:
        for _ in range(64):
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Connection(handler, sock, loop)
            if on_connection is not None:
                on_connection(conn)

    loop.add_reader(listener.fileno(), accept)


def _frame(payload: bytes) -> bytes:
    """HTTP/1.1 chunked framing, one chunk per SSE event. Event text is JSON, whose strings escape
    newlines, so a blank line only ever ends an event."""
    end = len(payload) - 2
    if payload.find(b"\n\n") == end:  # the common case: a single event
        return b"%x\r\n%b\r\n" % (len(payload), payload)
    return b"".join([b"%x\r\n%b\n\n\r\n" % (len(event) + 2, event) for event in payload[:end].split(b"\n\n")])


class Connection:
    """One client connection. `handler(conn, request)` answers with respond_* or begin_stream."""

    def __init__(self, handler: Callable[[Connection, Request], None], sock: socket.socket,
                 loop: asyncio.AbstractEventLoop) -> None:
        self._handler = handler
        self._buffer = bytearray()
        self._keep_alive = True
        self.busy = False  # a response is still being produced
        self.closed = False
        self._received_ns = 0
        self._pending_head = b""
        self.transport = StampedSocket(sock, loop, self.received, self.connection_lost)  # reads from here on

    # -- socket callbacks ------------------------------------------------------------------
    def connection_lost(self) -> None:
        self.closed = True

    def received(self, data: bytes, t_ns: int, _read_ns: int) -> None:
        self._received_ns = t_ns
        self._buffer += data
        if not self.busy:
            self._process()

    # -- request parsing -------------------------------------------------------------------
    def _process(self) -> None:
        while not self.busy and not self.closed:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_HEAD_BYTES:
                    self._fail(413, "request head too large")
                return
            try:
                request_line, *header_lines = self._buffer[:end].decode("latin-1").split("\r\n")
                method, target, version = request_line.split(" ", 2)
                headers = {}
                for line in header_lines:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
            except ValueError:
                self._fail(400, "malformed request")
                return
            if "chunked" in headers.get("transfer-encoding", ""):
                self._fail(411, "chunked request bodies are not supported; send Content-Length")
                return
            if length > MAX_BODY_BYTES:
                self._fail(413, "request body too large")
                return
            if len(self._buffer) < end + 4 + length:
                return
            body = bytes(self._buffer[end + 4:end + 4 + length])
            del self._buffer[:end + 4 + length]
            connection = headers.get("connection", "").lower()
            self._keep_alive = connection != "close" and (version == "HTTP/1.1" or connection == "keep-alive")
            self.busy = True
            self._handler(self, Request(method, target.split("?", 1)[0], headers, body, self._received_ns))

    def _fail(self, status: int, message: str) -> None:
        self._keep_alive = False
        self.respond_json(status, {"error": {"message": message, "type": "BadRequestError", "code": status}})

    # -- responses -------------------------------------------------------------------------
    def _head(self, status: int, content_type: str, extra: str) -> bytes:
        connection = "keep-alive" if self._keep_alive else "close"
        return (f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"
                f"Content-Type: {content_type}\r\nConnection: {connection}\r\n{extra}\r\n").encode()

    def respond(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        if self.closed:
            return
        self.transport.write(self._head(status, content_type, f"Content-Length: {len(body)}\r\n") + body)
        self._finish()

    def respond_json(self, status: int, obj: object) -> None:
        self.respond(status, orjson.dumps(obj))

    def begin_stream(self, status: int = 200, content_type: str = "text/event-stream") -> None:
        """Start a chunked response; its head goes out with the first chunk (one write, not two)."""
        self._pending_head = self._head(status, content_type,
                                        "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n")

    def write_chunk(self, payload: bytes) -> None:
        """SSE events (`data: ...\\n\\n` each) in one socket write, one HTTP chunk per event as the
        engines' servers frame them (they write each event separately)."""
        if not self.closed:
            if payload.find(b"\n\n") == len(payload) - 2:  # one event (the common case): _frame inlined
                self.transport.write(self._take_head() + b"%x\r\n%b\r\n" % (len(payload), payload))
            else:
                self.transport.write(self._take_head() + _frame(payload))

    def end_stream(self, last_payload: bytes = b"") -> None:
        if not self.closed:
            self.transport.write(self._take_head() + (_frame(last_payload) if last_payload else b"") + b"0\r\n\r\n")
        self._finish()

    def _take_head(self) -> bytes:
        head, self._pending_head = self._pending_head, b""
        return head

    def abort(self) -> None:
        """Drop the connection mid-response (a crashed server, as the client sees it)."""
        self.transport.abort()
        self.closed = True

    def reset(self) -> None:
        """Reset the connection (RST, not FIN): a server process killed mid-stream."""
        if not self.transport.closed:
            self.transport.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.abort()

    def _finish(self) -> None:
        self.busy = False
        if not self._keep_alive:
            self.transport.close()
            self.closed = True
        elif self._buffer:
            self._process()
