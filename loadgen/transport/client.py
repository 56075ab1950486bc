"""HTTP/1.1 to the server on non-blocking sockets, with a keep-alive connection pool.

Measured first (see the README's performance section): aiohttp spent ~160 µs of client CPU
per short streamed request here, and a coroutine wake-up per chunk; a burst of 64 requests
then left the client ~5 ms late, billed to TTFT. Here a request is one send() of pre-built
bytes, and every chunk is handled in the socket's reader callback: one read with the kernel's
arrival stamp, HTTP framing, SSE framing and the caller's on_event; no task switch.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import time
from collections.abc import Callable
from urllib.parse import urljoin, urlsplit

import orjson

from loadgen.stamped_socket import StampedSocket, enable_receive_timestamps

from .http1 import HttpProtocolError, ResponseParser
from .lag import ReadLag
from .proxy import Proxy, proxy_for
from .sse import SSEError, SSEParser

__all__ = ["HttpClient", "TransportError", "ExchangeError", "ProxyUnusable"]

_DONE = b"[DONE]"
#: how often open exchanges are checked: socket errors, first-token and idle timeouts
SWEEP_S = 0.25


class TransportError(Exception):
    """A request failed. kinds: connect, http_status, timeout, disconnect, malformed; a timeout's
    `phase` is connect, first_token, idle or total."""

    def __init__(self, kind: str, message: str, status: int | None = None, phase: str | None = None) -> None:
        super().__init__(message)
        self.kind, self.status, self.phase = kind, status, phase


class ExchangeError(TransportError):
    """How a streaming exchange failed (same kinds as TransportError)."""


class ProxyUnusable(TransportError):
    """The proxy could not be reached, or refused the request or its tunnel: the server was never
    asked (kind connect; the message names the proxy, never its credentials)."""


class _Exchange:
    """One request on one connection: collects the body, or streams SSE payloads to on_event."""

    __slots__ = ("future", "parser", "on_event", "sse", "body", "saw_done", "got_bytes", "sent_ns", "last_ns",
                 "first_event_ns")

    def __init__(self, future: asyncio.Future, on_event: Callable[[int, bytes], None] | None, head_only: bool) -> None:
        self.future = future
        self.parser = ResponseParser(head_only)
        self.on_event = on_event
        self.sse: SSEParser | None = None
        self.body: list[bytes] = []
        self.saw_done = False
        self.got_bytes = False
        self.sent_ns = self.last_ns = time.monotonic_ns()
        self.first_event_ns = 0  # when the first SSE event arrived (the first-token timeout stops)

    def data(self, t_ns: int, data: bytes) -> None:
        self.got_bytes = True
        self.last_ns = t_ns
        parser = self.parser
        pieces = parser.feed(data)
        if self.on_event is not None and parser.status == 200:
            sse = self.sse
            if sse is None:
                if "text/event-stream" not in parser.headers.get("content-type", ""):
                    raise HttpProtocolError("the response is not an SSE stream (Content-Type "
                                            f"{parser.headers.get('content-type', 'missing')!r})")
                sse = self.sse = SSEParser()
            on_event = self.on_event
            for piece in pieces:
                for event in sse.feed(piece):
                    if event == _DONE:
                        self.saw_done = True
                    else:
                        if not self.first_event_ns:
                            self.first_event_ns = t_ns
                        on_event(t_ns, event)
        else:
            self.body.extend(pieces)
        if parser.failure is not None:
            raise parser.failure


class _Connection:
    """One keep-alive connection serving one exchange at a time; subclasses do the I/O."""

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.exchange: _Exchange | None = None
        self.closed = False
        self.used = False
        self.last_was_stream = False

    def feed(self, t_ns: int, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:
            self.close()  # bytes nobody asked for: the connection cannot be trusted
            return
        try:
            exchange.data(t_ns, data)
        except (HttpProtocolError, SSEError) as exc:
            self._fail(TransportError("malformed", str(exc)))
            self.close()
            return
        if exchange.parser.complete:
            self.exchange = None
            if not exchange.future.done():
                exchange.future.set_result(exchange)
            self.last_was_stream = exchange.on_event is not None
            if exchange.parser.keep_alive and (self.pool.reuse_after_stream or not self.last_was_stream):
                self.pool.release(self)
            else:
                self.close()

    def end_of_stream(self) -> None:
        """The server closed its side: completes a close-delimited body, fails anything else."""
        exchange = self.exchange
        if exchange is not None:
            try:
                exchange.parser.eof()
                self.feed(time.monotonic_ns(), b"")
            except HttpProtocolError:
                pass
        self.close()

    def lost(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.pool.forget(self)
        exchange, self.exchange = self.exchange, None
        if exchange is not None and not exchange.future.done():
            where = "mid-response" if exchange.got_bytes else "before any response byte"
            exchange.future.set_exception(TransportError("disconnect", f"connection closed {where}"))

    def _fail(self, error: TransportError) -> None:
        exchange, self.exchange = self.exchange, None
        if exchange is not None and not exchange.future.done():
            exchange.future.set_exception(error)

    def start(self, request: bytes, exchange: _Exchange) -> None:
        self.exchange = exchange
        self.used = True
        self.write(request)

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def socket_error(self) -> int:
        """A pending socket error (errno), 0 if none."""
        return 0


class _SocketConnection(_Connection):
    """Plain TCP: each read carries the kernel's arrival stamp (loadgen.stamped_socket)."""

    def __init__(self, pool: _Pool, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(pool)
        self._io = StampedSocket(sock, loop, self._on_data, self.lost)

    def _on_data(self, data: bytes, arrival_ns: int, read_ns: int) -> None:
        if data:
            self.pool.read_lag.add(read_ns - arrival_ns)
            self.feed(arrival_ns, data)
        else:
            self.end_of_stream()

    def write(self, data: bytes) -> None:
        self._io.write(data)

    def close(self) -> None:
        self._io.abort()

    def socket_error(self) -> int:
        # uvloop (libuv) stops a reader whose socket reports an error (EPOLLERR, e.g. a reset)
        # without calling it: the sweep asks the socket itself. Measured: 1 in 4 resets missed.
        return 0 if self._io.closed else self._io.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)


class _TlsConnection(_Connection, asyncio.Protocol):
    """TLS through asyncio's transport (no kernel stamps there: the read time is used)."""

    def __init__(self, pool: _Pool) -> None:
        super().__init__(pool)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.feed(time.monotonic_ns(), data)

    def eof_received(self) -> bool | None:
        self.end_of_stream()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost()

    def write(self, data: bytes) -> None:
        assert self.transport is not None, "a request is written only once the connection is made"
        self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.lost()


class _Pool:
    """Idle keep-alive connections to one server, direct or through an HTTP proxy."""

    def __init__(self, host: str, port: int, ssl_context: ssl.SSLContext | None, connect_timeout_s: float,
                 proxy: Proxy | None) -> None:
        self.host, self.port, self.ssl = host, port, ssl_context
        self.connect_timeout_s = connect_timeout_s
        self.proxy = proxy
        self.idle: list[_Connection] = []
        self.all: set[_Connection] = set()
        self._address: tuple | None = None
        self.read_lag = ReadLag()
        self.reuse_after_stream = True

    async def acquire(self, fresh: bool = False) -> _Connection:
        while self.idle and not fresh:
            conn = self.idle.pop()
            if not conn.closed:
                return conn
        try:
            conn = await asyncio.wait_for(self._connect(), self.connect_timeout_s)
        except TimeoutError:
            through = f" through proxy {self.proxy.shown}" if self.proxy else ""
            raise TransportError("timeout", f"connecting to {self.host}:{self.port}{through} timed out",
                                 phase="connect") from None
        except ssl.SSLError as exc:
            raise TransportError("connect", f"TLS handshake with {self.host}:{self.port} failed: "
                                            f"{exc.reason or exc}") from None
        except OSError as exc:
            raise TransportError("connect", f"cannot connect to {self.host}:{self.port}: "
                                            f"{exc.strerror or exc}") from None
        self.all.add(conn)
        return conn

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        if self.ssl is not None and self.proxy is None:
            _, conn = await loop.create_connection(lambda: _TlsConnection(self), self.host, self.port,
                                                   ssl=self.ssl, server_hostname=self.host)
            return conn
        sock = await self._open_socket(loop)
        if self.ssl is None:  # direct, or to an HTTP proxy that forwards each request
            return _SocketConnection(self, sock, loop)
        try:  # https through the proxy: a CONNECT tunnel, then TLS with the server inside it
            assert self.proxy is not None
            await _open_tunnel(loop, sock, self.proxy, self.host, self.port)
            _, conn = await loop.create_connection(lambda: _TlsConnection(self), sock=sock, ssl=self.ssl,
                                                   server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        return conn

    async def _open_socket(self, loop: asyncio.AbstractEventLoop) -> socket.socket:
        """A connected TCP socket to the server, or to the proxy; reads kernel-stamped. A proxy
        that cannot be reached is named (without its credentials) in the TransportError."""
        host, port = (self.proxy.host, self.proxy.port) if self.proxy else (self.host, self.port)
        try:
            if self._address is None:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
                self._address = infos[0]
            family, kind, proto, _, address = self._address
            sock = socket.socket(family, kind, proto)
        except OSError as exc:
            raise self._proxy_unreachable(exc) if self.proxy else exc from None
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            enable_receive_timestamps(sock)
            await loop.sock_connect(sock, address)
        except BaseException as exc:
            sock.close()
            if self.proxy and isinstance(exc, OSError):
                raise self._proxy_unreachable(exc) from None
            raise
        return sock

    def _proxy_unreachable(self, exc: OSError) -> ProxyUnusable:
        assert self.proxy is not None
        # uvloop's refusal says "Connect call failed (...)": the errno says what failed; a DNS
        # failure's errno is the resolver's (negative), its strerror the words
        reason = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else exc.strerror or str(exc)
        return ProxyUnusable("connect", f"cannot connect to proxy {self.proxy.shown} (from {self.proxy.source}): "
                                        f"{reason}")

    def release(self, conn: _Connection) -> None:
        if not conn.closed:
            self.idle.append(conn)

    def forget(self, conn: _Connection) -> None:
        self.all.discard(conn)

    def close(self) -> None:
        for conn in list(self.all):
            conn.close()
        self.idle.clear()


class HttpClient:
    """GET and streaming POST against one server root (http:// or https://, TLS verified unless
    verify_tls is False), direct or through an HTTP proxy.

    `proxy` is --proxy: None takes the proxy environment variables (NO_PROXY honoured), "" is no
    proxy; see transport/proxy.py for the rules. Through a proxy, an http:// server gets each request
    with an absolute-form target (`POST http://host:port/v1/completions`) on a plain connection to the
    proxy, read kernel-stamped like a direct one; an https:// server is reached through a CONNECT
    tunnel, with the server's certificate and name verified inside it. ValueError for a URL, or a
    proxy URL, that cannot be used."""

    def __init__(self, base_url: str, *, api_key: str | None, timeout_s: float, connect_timeout_s: float = 10.0,
                 first_token_timeout_s: float | None = None, idle_timeout_s: float | None = None,
                 verify_tls: bool = True, proxy: str | None = None) -> None:
        parts = urlsplit(base_url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        #: the proxy every request goes through, None for direct connections
        self.proxy = proxy_for(self.base_url, proxy)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        ssl_context = ssl.create_default_context() if parts.scheme == "https" else None
        if ssl_context is not None and not verify_tls:  # --insecure: an explicit choice, never the default
            ssl_context.check_hostname = False
            ssl_context.verify_mode = ssl.CERT_NONE
        self._pool = _Pool(parts.hostname, port, ssl_context, connect_timeout_s, self.proxy)
        host_header = parts.netloc.rsplit("@", 1)[-1]
        self._prefix = parts.path
        forwarded = self.proxy is not None and ssl_context is None  # the proxy forwards each request
        #: what precedes a path in the request line: absolute-form when a proxy forwards it
        self._target = f"http://{host_header}{parts.path}" if forwarded else parts.path
        self._api_key = api_key
        auth = f"Authorization: Bearer {api_key}\r\n" if api_key else ""
        proxy_auth = self.proxy.auth_header if forwarded and self.proxy is not None else ""
        self._common = f"Host: {host_header}\r\n{auth}{proxy_auth}User-Agent: loadgen\r\n"
        self._timeout_s = timeout_s
        # Checked by one sweep every SWEEP_S over the open streams, not a timer per chunk.
        self._first_token_ns = int(first_token_timeout_s * 1e9) if first_token_timeout_s else None
        self._idle_ns = int(idle_timeout_s * 1e9) if idle_timeout_s else None
        self._sweeper: asyncio.TimerHandle | None = None

    def _scrub(self, text: str) -> str:
        """A server may echo the key it refused: error messages never carry it on."""
        return text.replace(self._api_key, "***") if self._api_key else text

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        self._pool.close()

    def _sweep(self) -> None:
        """Fail exchanges whose socket failed unnoticed, and streams that waited too long for their
        first event or between two reads."""
        now = time.monotonic_ns()
        for conn in list(self._pool.all):
            exchange = conn.exchange
            if exchange is None or exchange.future.done():
                continue
            error = conn.socket_error()
            if error:
                where = "mid-response" if exchange.got_bytes else "before any response byte"
                _fail_exchange(conn, exchange, TransportError(
                    "disconnect", f"connection {os.strerror(error).lower()} {where}"))
            elif exchange.on_event is None:
                continue
            elif not exchange.first_event_ns:
                if self._first_token_ns is not None and now - exchange.sent_ns > self._first_token_ns:
                    _fail_exchange(conn, exchange, TransportError(
                        "timeout", f"no first token within {self._first_token_ns / 1e9:g} s", phase="first_token"))
            elif self._idle_ns is not None and now - exchange.last_ns > self._idle_ns:
                _fail_exchange(conn, exchange, TransportError(
                    "timeout", f"no data for {self._idle_ns / 1e9:g} s between chunks", phase="idle"))
        self._sweeper = asyncio.get_running_loop().call_later(SWEEP_S, self._sweep)

    @property
    def read_lag(self) -> ReadLag:
        """Kernel arrival -> processing delay of every read since the last reset (the client's own lateness)."""
        return self._pool.read_lag

    def reset_read_lag(self) -> None:
        self._pool.read_lag = ReadLag()

    def _request_bytes(self, method: str, path: str, body: bytes | None, headers: str = "") -> bytes:
        if body is None:
            return f"{method} {self._target}{path} HTTP/1.1\r\n{self._common}Accept: */*\r\n\r\n".encode()
        return (f"{method} {self._target}{path} HTTP/1.1\r\n{self._common}{headers}Content-Type: application/json\r\n"
                f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\n\r\n").encode("latin-1") + body

    async def _exchange(self, request: bytes, on_event, on_sent: Callable[[int], None] | None) -> _Exchange:
        loop = asyncio.get_running_loop()
        for attempt in (0, 1):
            conn = await self._pool.acquire(fresh=attempt > 0)
            reused = conn.used
            exchange = _Exchange(loop.create_future(), on_event, head_only=False)
            if self._sweeper is None:
                self._sweeper = loop.call_later(SWEEP_S, self._sweep)
            # stamped before the write: a process preempted just after it could otherwise see (and
            # kernel-stamp) the response before it had noted the request as sent
            if on_sent is not None:
                on_sent(time.monotonic_ns())
            conn.start(request, exchange)
            timer = loop.call_later(self._timeout_s, _expire, conn, exchange, self._timeout_s)
            try:
                return await exchange.future
            except TransportError as exc:
                # A kept-alive connection the server closed while idle fails before any byte of the
                # response: the request never reached the server, so it goes again once, on a new one.
                if attempt == 0 and reused and exc.kind == "disconnect" and not exchange.got_bytes:
                    if conn.last_was_stream:
                        # Some servers (llama-server) close a connection after a streamed response
                        # while announcing keep-alive: stop reusing connections after streams.
                        self._pool.reuse_after_stream = False
                    continue
                raise
            except asyncio.CancelledError:
                conn.exchange = None
                conn.close()
                raise
            finally:
                timer.cancel()
        raise AssertionError("unreachable")

    async def open_connections(self, count: int, path: str) -> None:
        """Open `count` pooled connections with concurrent GETs of `path`, so connection set-up is
        paid before the clock starts instead of inside the first requests' TTFT."""
        await asyncio.gather(*(self.get(path) for _ in range(count)), return_exceptions=True)

    async def get(self, path: str) -> tuple[int, bytes]:
        """(status, body) of GET `path`; TransportError for a redirect or a proxy that wants credentials,
        neither of which is an answer from the server at `path`."""
        exchange = await self._exchange(self._request_bytes("GET", path, None), None, None)
        refusal = self._not_an_answer("GET", path, exchange.parser)
        if refusal is not None:
            raise refusal
        return exchange.parser.status, b"".join(exchange.body)

    async def stream(self, path: str, body: bytes, on_event: Callable[[int, bytes], None],
                     on_sent: Callable[[int], None], category: str = "") -> None:
        """POST `body`; on_event(t_ns, data) for every SSE data payload but [DONE], with t_ns taken
        once per network read (events that arrived together share it). Raises ExchangeError.

        `category` goes out as the X-Loadgen-Category header: engines ignore it, and the emulator
        uses it to pick a per-category acceptance profile."""
        headers = f"X-Loadgen-Category: {_header_safe(category)}\r\n" if category else ""
        try:
            exchange = await self._exchange(self._request_bytes("POST", path, body, headers), on_event, on_sent)
        except TransportError as exc:
            raise ExchangeError(exc.kind, self._scrub(str(exc)), exc.status, exc.phase) from None
        status = exchange.parser.status
        if status != 200:
            refusal = self._not_an_answer("POST", path, exchange.parser)
            if refusal is not None:
                raise ExchangeError(refusal.kind, self._scrub(str(refusal)), status)
            raise ExchangeError("http_status", self._scrub(_error_message(b"".join(exchange.body), status)), status)
        if not exchange.saw_done:
            tail = exchange.sse.close() if exchange.sse else []
            if _DONE not in tail:
                raise ExchangeError("disconnect", "stream ended without [DONE]")

    def _not_an_answer(self, method: str, path: str, parser: ResponseParser) -> TransportError | None:
        """A redirect (one clear error naming where it points: loadgen never follows one, a redirected
        POST would change what is measured) or a proxy asking for credentials; None for any other status."""
        status = parser.status
        if 300 <= status < 400 and status != 304:
            location = parser.headers.get("location")
            if not location:
                return TransportError("http_status", f"the server redirected {method} {self._prefix}{path} "
                                                     f"(HTTP {status}) without saying where", status)
            target = urljoin(f"{self.base_url}{path}", location)
            advice = (f"use {target.removesuffix(path)} as --url" if target.endswith(path)
                      else "use the server it points to as --url")
            return TransportError("http_status", f"the server redirected {method} {self._prefix}{path} "
                                                 f"(HTTP {status}) to {target}: {advice}", status)
        if status == 407 and self.proxy is not None:
            return ProxyUnusable("connect", _proxy_wants_credentials(self.proxy), status)
        return None


def _proxy_wants_credentials(proxy: Proxy) -> str:
    given = "refused the credentials in" if proxy.auth_header else "needs credentials: put them in"
    return f"proxy {proxy.shown} (from {proxy.source}) {given} the proxy URL, http://USER:PASS@HOST:PORT (HTTP 407)"


async def _open_tunnel(loop: asyncio.AbstractEventLoop, sock: socket.socket, proxy: Proxy, host: str,
                       port: int) -> None:
    """CONNECT host:port through the proxy on `sock`; returns once the proxy says the tunnel is open,
    TransportError (naming the proxy) when it refuses. Nothing follows the proxy's answer until the
    TLS handshake starts, so reading it cannot take a byte of the server's."""
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    await loop.sock_sendall(sock, (f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{proxy.auth_header}"
                                   "User-Agent: loadgen\r\n\r\n").encode("latin-1"))
    parser = ResponseParser(head_only=True)
    while not parser.head_done:
        data = await loop.sock_recv(sock, 4096)
        if not data:
            raise ProxyUnusable("connect", f"proxy {proxy.shown} (from {proxy.source}) closed the connection "
                                            f"on CONNECT {authority}")
        try:
            parser.feed(data)
        except HttpProtocolError as exc:
            raise ProxyUnusable("connect", f"proxy {proxy.shown} (from {proxy.source}) answered CONNECT "
                                            f"{authority} with {exc}") from None
    if parser.status == 407:
        raise ProxyUnusable("connect", _proxy_wants_credentials(proxy), parser.status)
    if not 200 <= parser.status < 300:
        raise ProxyUnusable("connect", f"proxy {proxy.shown} (from {proxy.source}) refused CONNECT {authority}: "
                                        f"HTTP {parser.status}; it may not allow tunnels to port {port}",
                             parser.status)


def _header_safe(value: str) -> str:
    """A header value that cannot break the request: printable Latin-1 only, at most 200 characters."""
    return "".join(c if " " <= c <= "~" or "\xa0" <= c <= "\xff" else "_" for c in value[:200])


def _expire(conn: _Connection, exchange: _Exchange, timeout_s: float) -> None:
    _fail_exchange(conn, exchange, TransportError("timeout", f"no complete response within {timeout_s:g} s",
                                                  phase="total"))


def _fail_exchange(conn: _Connection, exchange: _Exchange, error: TransportError) -> None:
    if not exchange.future.done():
        exchange.future.set_exception(error)
        conn.exchange = None
        conn.close()


def _error_message(body: bytes, status: int) -> str:
    """The server's own error text where it gives one (OpenAI shape), else the start of the body."""
    try:
        obj = orjson.loads(body)
        err = obj.get("error", obj) if isinstance(obj, dict) else obj
        message = err.get("message") or err.get("detail") if isinstance(err, dict) else None
        if message:
            return f"HTTP {status}: {message}"[:500]
    except orjson.JSONDecodeError:
        pass
    return f"HTTP {status}: {body[:200].decode('utf-8', 'replace')}"
