"""Ctrl-C and SIGTERM during a run: they stop it gracefully (see the lifecycle's interrupt), and
the handlers a caller had before (serve and matrix: SIGTERM stops their server) come back after."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

__all__ = ["InterruptSignals"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class InterruptSignals:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._previous = {sig: signal.getsignal(sig) for sig in _SIGNALS}

    def interrupt_with(self, handler: Callable[[], None]) -> None:
        for sig in _SIGNALS:
            self._loop.add_signal_handler(sig, handler)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            self._loop.remove_signal_handler(sig)
            if handler is not None:  # None: set outside Python, nothing to restore
                signal.signal(sig, handler)
