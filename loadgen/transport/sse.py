"""Incremental Server-Sent-Events parser for the client's read path (WHATWG framing, bytes in and out).

It runs once per network read of every open stream, so the work per read is a few C-level
bytes operations (`in`, `split`, `splitlines`) plus one short Python step per line; nothing loops
per byte. Payloads are never decoded: the caller hands them to a JSON parser as bytes.
"""

from __future__ import annotations

__all__ = ["SSEParser", "SSEError"]


class SSEError(ValueError):
    """The stream broke the SSE framing beyond repair (a line over the size limit)."""


class SSEParser:
    """Incremental SSE parser: feed raw network bytes, get the `data` payload of each complete event.

    Lines end with CRLF, LF or CR; a blank line dispatches the event if it had a `data` field;
    several data lines join with LF. Comments (":...") and the other fields (event, id, retry,
    unknown) are ignored, and `[DONE]` is an ordinary payload: the caller decides what it means.
    After an SSEError the parser's state is reset, but the stream it came from is not to be trusted.
    """

    __slots__ = ("_pending", "_pending_len", "_data", "_max_line", "_skip_lf")

    def __init__(self, max_line_bytes: int = 1 << 24) -> None:
        self._pending: list[bytes] = []  # start of the unfinished last line, kept in pieces
        self._pending_len = 0
        self._data: list[bytes] | None = None  # data lines of the event being read
        self._max_line = max_line_bytes
        self._skip_lf = False  # the last chunk ended in CR: a LF opening the next one is its pair

    def feed(self, chunk: bytes) -> list[bytes]:
        """Return the data payloads of the events completed by this chunk, in order."""
        if not chunk:
            return []  # an empty read must not consume a pending CR's LF half
        if (self._data is None and not self._pending and not self._skip_lf and chunk[:6] == b"data: "
                and chunk[-2:] == b"\n\n" and chunk.count(b"\n") == 2 and b"\r" not in chunk):
            return [chunk[6:-2]]  # exactly one whole one-line event, as engines send them: no line loop
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
                if not chunk:
                    return []
        if b"\r" in chunk:
            # CR or CRLF line ends. bytes.splitlines breaks at exactly SSE's three (CRLF, CR, LF)
            # but drops the empty piece after a final line end, which is put back so that the
            # last element is always the unfinished tail. A CRLF cut between two reads is the
            # only line end spanning chunks: _skip_lf drops its LF half from the next one.
            self._skip_lf = chunk[-1] == 13
            lines = chunk.splitlines()
            if chunk[-1] in b"\r\n":
                lines.append(b"")
        elif b"\n" in chunk:
            lines = chunk.split(b"\n")
        else:
            # Middle of a (long) line: keep the piece without copying or rescanning what we have,
            # so a line arriving in many reads costs linear time.
            self._hold(chunk)
            return []
        if self._pending:
            self._pending.append(lines[0])
            lines[0] = b"".join(self._pending)
            self._pending = []
            self._pending_len = 0
        tail = lines.pop()  # after the last line end: unfinished (b"" if none)
        events: list[bytes] = []
        data = self._data
        for line in lines:
            if not line:  # blank line: dispatch
                if data is not None:
                    events.append(data[0] if len(data) == 1 else b"\n".join(data))
                    data = None
            elif line[:5] == b"data:":
                value = line[6:] if line[5:6] == b" " else line[5:]
                if data is None:
                    data = [value]
                else:
                    data.append(value)
            elif line == b"data":  # a field name with no colon has an empty value
                if data is None:
                    data = [b""]
                else:
                    data.append(b"")
            # anything else: comment, event/id/retry or an unknown field
        self._data = data
        if tail:
            self._hold(tail)
        return events

    def close(self) -> list[bytes]:
        """End of stream: return the pending event's data if any data line was seen; otherwise [].

        Lenient on purpose: some servers end the stream after the last data line without the
        blank line that should dispatch it, and that event is still a real token.
        """
        self._skip_lf = False
        if not self._pending and self._data is None:
            return []
        return self.feed(b"\n\n")  # end the unfinished line, then a blank line to dispatch

    def _hold(self, piece: bytes) -> None:
        """Keep part of an unfinished line; the size limit keeps memory bounded on garbage."""
        self._pending.append(piece)
        self._pending_len += len(piece)
        if self._pending_len > self._max_line:
            self._pending = []
            self._pending_len = 0
            self._data = None
            raise SSEError(
                f"SSE line longer than {self._max_line} bytes without a line end "
                "(not an event stream, or a broken one)"
            )
