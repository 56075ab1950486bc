"""Sockets whose reads carry the kernel's receive timestamp, converted to CLOCK_MONOTONIC.

With SO_TIMESTAMPNS the kernel stamps each TCP segment as it arrives, and recvmsg hands the
stamp back: the time the bytes reached this machine, not the time Python got round to
reading them. A busy event loop then delays the processing of a chunk but not its timestamp,
so the client's own load stays out of the latencies it reports (and the emulator's out of the
arrival times it schedules from). Where the kernel gives no stamp, the read time is used.
"""

from __future__ import annotations

import socket
import struct
import sys
import time

__all__ = ["StampedSocket", "enable_receive_timestamps", "recv_stamped", "RECV_BYTES"]

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35 if sys.platform == "linux" else None)
_CMSG_SPACE = socket.CMSG_SPACE(16)
_TIMESPEC = struct.Struct("qq")
_monotonic_ns = time.monotonic_ns
_realtime_ns = time.time_ns
RECV_BYTES = 256 * 1024
#: two realtime readings this close around a monotonic one make the pair one instant
CLOCK_READ_SPREAD_NS = 20_000
CLOCK_READ_TRIES = 5


def enable_receive_timestamps(sock: socket.socket) -> bool:
    if SO_TIMESTAMPNS is None:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


def recv_stamped(sock: socket.socket, size: int = RECV_BYTES) -> tuple[bytes, int, int]:
    """One non-blocking read: (data, arrival ns, read ns), both CLOCK_MONOTONIC; arrival is the
    read time where the kernel gave no stamp. Raises BlockingIOError when there is nothing to read.

    The stamp is CLOCK_REALTIME; subtracting its age (realtime now - stamp) from monotonic now
    converts it without assuming the two clocks keep a fixed offset over the run.
    """
    data, ancillary, _, _ = sock.recvmsg(size, _CMSG_SPACE)
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= 16:
            sec, nsec = _TIMESPEC.unpack_from(payload)
            mono, real = _clocks_now()
            age = real - (sec * 1_000_000_000 + nsec)
            if 0 <= age < 10_000_000_000:  # a stamp from a stepped clock is ignored
                return data, mono - age, mono
            return data, mono, mono
    mono = _monotonic_ns()
    return data, mono, mono


def _clocks_now() -> tuple[int, int]:
    """Monotonic and realtime now, read as one instant: a process preempted between two readings
    would move every converted stamp early by the preemption (ahead of its own request's send,
    on a loaded machine), so the monotonic reading is bracketed by two realtime ones and retried
    while they lie far apart."""
    for _ in range(CLOCK_READ_TRIES):
        before = _realtime_ns()
        mono = _monotonic_ns()
        after = _realtime_ns()
        if after - before <= CLOCK_READ_SPREAD_NS:
            break
    return mono, (before + after) // 2


class StampedSocket:
    """A non-blocking TCP socket on the event loop, shared by the client and the emulator.

    Each read hands `on_data(data, arrival_ns, read_ns)` the kernel's arrival stamp; writes go out
    at once, and only what the socket would not take waits for it to drain. `on_closed()` runs once,
    when the socket closes for any reason (EOF shows up as on_data(b"", ...) first).
    """

    __slots__ = ("sock", "_loop", "_fd", "_pending", "_closing", "_on_data", "_on_closed")

    def __init__(self, sock: socket.socket, loop, on_data, on_closed) -> None:
        self.sock, self._loop = sock, loop
        self._fd = sock.fileno()
        self._pending = bytearray()
        self._closing = False
        self._on_data, self._on_closed = on_data, on_closed
        loop.add_reader(self._fd, self._readable)

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def _readable(self) -> None:
        try:
            data, arrival_ns, read_ns = recv_stamped(self.sock)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.abort()
            return
        self._on_data(data, arrival_ns, read_ns)
        if not data:
            self.abort()

    def write(self, data: bytes) -> None:
        if self._fd < 0:
            return
        if self._pending:
            self._pending += data
            return
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.abort()
            return
        if sent < len(data):
            self._pending += data[sent:]
            self._loop.add_writer(self._fd, self._writable)

    def _writable(self) -> None:
        try:
            sent = self.sock.send(self._pending)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.abort()
            return
        del self._pending[:sent]
        if not self._pending:
            self._loop.remove_writer(self._fd)
            if self._closing:
                self.abort()

    def close(self) -> None:
        """Close once the queued bytes are out."""
        if self._pending:
            self._closing = True
        else:
            self.abort()

    def abort(self) -> None:
        """Close now, dropping anything queued."""
        if self._fd < 0:
            return
        self._loop.remove_reader(self._fd)
        if self._pending:
            self._loop.remove_writer(self._fd)
        self._fd = -1
        self.sock.close()
        self._on_closed()
