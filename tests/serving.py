"""Reading `loadgen serve` from a test: it prints `ready: URL ...` once its server answers."""

from __future__ import annotations

import subprocess
import time


def wait_ready(proc: subprocess.Popen, timeout_s: float = 60) -> tuple[str, list[str]]:
    """The URL from serve's ready line, and every line read so far; an AssertionError with those
    lines (and serve's stderr, if it has exited) when no ready line comes within `timeout_s`."""
    assert proc.stdout is not None, "start loadgen serve with stdout=PIPE, text=True"
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip())
        if line.startswith("ready: "):
            return line.split()[1], lines
    stderr = proc.stderr.read() if proc.stderr is not None and proc.poll() is not None else ""
    raise AssertionError("serve never got ready:\n" + "\n".join(lines) + "\n" + stderr)
