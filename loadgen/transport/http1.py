"""An incremental HTTP/1.1 response parser: head, then a body framed by Content-Length, chunked
transfer coding, or the connection's close."""

from __future__ import annotations

__all__ = ["ResponseParser", "HttpProtocolError", "MAX_HEAD_BYTES"]

MAX_HEAD_BYTES = 64 * 1024

_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILER, _UNTIL_CLOSE, _DONE = range(8)


class HttpProtocolError(ValueError):
    """The server's bytes are not an HTTP/1.1 response we can frame."""


class ResponseParser:
    """feed(bytes) -> body pieces (possibly empty); `complete` once the body has ended.

    After the head is parsed, `status`, `headers` (lower-case names) and `keep_alive` are set.
    Body pieces are returned as they arrive, so a streamed response is never held back.
    """

    __slots__ = ("status", "headers", "keep_alive", "_state", "_buffer", "_remaining", "head_only", "failure")

    def __init__(self, head_only: bool = False) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.keep_alive = False
        self.head_only = head_only  # a HEAD request: no body whatever the headers say
        self._state = _HEAD
        self._buffer = b""
        self._remaining = 0
        self.failure: HttpProtocolError | None = None

    @property
    def complete(self) -> bool:
        return self._state == _DONE

    @property
    def head_done(self) -> bool:
        return self._state != _HEAD

    def feed(self, data: bytes) -> list[bytes]:
        """Body pieces completed by `data`. Broken framing raises HttpProtocolError, but only on the
        next call, so the body pieces that came before the fault are still delivered."""
        if self.failure is not None:
            raise self.failure
        out: list[bytes] = []
        try:
            self._feed(data, out)
        except HttpProtocolError as exc:
            self.failure = exc
            if not out:
                raise
        return out

    def _feed(self, data: bytes, out: list[bytes]) -> None:
        buf = self._buffer + data if self._buffer else data
        self._buffer = b""
        pos = 0
        n = len(buf)
        while pos < n:
            state = self._state
            if state == _DONE:
                break
            if state == _HEAD:
                end = buf.find(b"\r\n\r\n", pos)
                if end < 0:
                    if n - pos > MAX_HEAD_BYTES:
                        raise HttpProtocolError("response head larger than 64 KiB")
                    break
                self._parse_head(buf[pos:end])
                pos = end + 4
                if self.status == 100:  # an interim response: the real one follows
                    self._state = _HEAD
            elif state == _LENGTH:
                take = min(self._remaining, n - pos)
                out.append(buf[pos:pos + take])
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = _DONE
            elif state == _CHUNK_SIZE:
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    if n - pos > 1024:
                        raise HttpProtocolError("chunk size line too long")
                    break
                try:
                    size = int(buf[pos:end], 16)
                except ValueError:
                    size = _chunk_size_with_extensions(buf[pos:end])
                pos = end + 2
                if size == 0:
                    self._state = _TRAILER
                elif pos + size + 2 <= n and buf[pos + size:pos + size + 2] == b"\r\n":
                    out.append(buf[pos:pos + size])  # the whole chunk is here (the usual case): one step
                    pos += size + 2
                else:
                    self._remaining = size
                    self._state = _CHUNK_DATA
            elif state == _CHUNK_DATA:
                take = min(self._remaining, n - pos)
                out.append(buf[pos:pos + take])
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = _CHUNK_CRLF
            elif state == _CHUNK_CRLF:
                if n - pos < 2:
                    break
                if buf[pos:pos + 2] != b"\r\n":
                    raise HttpProtocolError("chunk not followed by CRLF")
                pos += 2
                self._state = _CHUNK_SIZE
            elif state == _TRAILER:
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    break
                if end == pos:  # the empty line that ends the (usually empty) trailer section
                    self._state = _DONE
                pos = end + 2
            elif state == _UNTIL_CLOSE:
                out.append(buf[pos:])
                pos = n
        self._buffer = buf[pos:] if pos < n else b""

    def eof(self) -> None:
        """The connection closed: completes a close-delimited body, or raises if the body was cut."""
        if self._state == _UNTIL_CLOSE:
            self._state = _DONE
        elif self._state != _DONE:
            raise HttpProtocolError("connection closed before the response was complete")

    def _parse_head(self, head: bytes) -> None:
        try:
            status_line, *lines = head.decode("latin-1").split("\r\n")
            version, status, *_ = status_line.split(" ", 2)
            self.status = int(status)
        except ValueError:
            raise HttpProtocolError(f"not an HTTP response: {head[:40]!r}") from None
        if not version.startswith("HTTP/1."):
            raise HttpProtocolError(f"not an HTTP/1.x response: {version[:20]!r}")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        self.headers = headers
        connection = headers.get("connection", "").lower()
        self.keep_alive = connection != "close" and (version == "HTTP/1.1" or connection == "keep-alive")
        if self.status == 100:
            return
        if self.head_only or self.status in (204, 304) or 100 <= self.status < 200:
            self._state = _DONE
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self._state = _CHUNK_SIZE
        elif "content-length" in headers:
            try:
                self._remaining = int(headers["content-length"])
            except ValueError:
                raise HttpProtocolError("bad Content-Length") from None
            self._state = _LENGTH if self._remaining else _DONE
        else:
            self._state = _UNTIL_CLOSE
            self.keep_alive = False


def _chunk_size_with_extensions(line: bytes) -> int:
    """A chunk-size line with `;name=value` extensions (rare), or a broken one."""
    size_text = line.split(b";", 1)[0].strip()
    try:
        return int(size_text, 16)
    except ValueError:
        raise HttpProtocolError(f"bad chunk size {size_text[:20]!r}") from None
