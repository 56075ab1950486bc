"""Kernel receive timestamps, converted to CLOCK_MONOTONIC.

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

__all__ = ["enable_receive_timestamps", "recv_stamped", "RECV_BYTES"]

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35 if sys.platform == "linux" else None)
_CMSG_SPACE = socket.CMSG_SPACE(16)
_TIMESPEC = struct.Struct("qq")
_monotonic_ns = time.monotonic_ns
_realtime_ns = time.time_ns
RECV_BYTES = 256 * 1024


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
    mono = _monotonic_ns()
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= 16:
            sec, nsec = _TIMESPEC.unpack_from(payload)
            age = _realtime_ns() - (sec * 1_000_000_000 + nsec)
            if 0 <= age < 10_000_000_000:  # a stamp from a stepped clock is ignored
                return data, mono - age, mono
    return data, mono, mono
