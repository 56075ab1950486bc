"""Start the emulator as a child process (`loadgen emulate`) and stop it again."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time

__all__ = ["EmulatorProcess", "READY_PREFIX"]

READY_PREFIX = "emulator ready:"
_READY = re.compile(re.escape(READY_PREFIX) + r" (http://\S+)")


class EmulatorProcess:
    """`with EmulatorProcess(["--ttft-ms", "50"]) as emu: emu.url` — listens on a free loopback port."""

    def __init__(self, args: list[str], start_timeout_s: float = 30.0) -> None:
        self._args = ["--host", "127.0.0.1", "--port", "0", *args]
        self._timeout = start_timeout_s
        self._proc: subprocess.Popen | None = None
        self.url = ""

    def __enter__(self) -> EmulatorProcess:
        self._proc = subprocess.Popen([sys.executable, "-m", "loadgen", "emulate", *self._args],
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      start_new_session=True)  # Ctrl-C reaches the client only
        output = self._proc.stdout
        assert output is not None, "stdout=PIPE gives the process a stdout"
        deadline = time.monotonic() + self._timeout
        seen: list[str] = []
        with selectors.DefaultSelector() as sel:
            sel.register(output, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if not sel.select(timeout=0.2):
                    continue
                line = output.readline()
                if not line:
                    break
                seen.append(line.rstrip())
                match = _READY.search(line)
                if match:
                    self.url = match.group(1)
                    return self
        self.stop()
        raise RuntimeError("the built-in emulator did not start: " + " | ".join(seen[-5:]))

    @property
    def pid(self) -> int:
        """The emulator's process id, also its process group's (its workers are in the group)."""
        assert self._proc is not None, "the emulator has a process only inside `with`"
        return self._proc.pid

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
