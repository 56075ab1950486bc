"""Start a rendered recipe as a server, wait until it really serves, and stop it with everything it
started.

The server runs in its own session, so Ctrl-C at the terminal reaches loadgen only and loadgen
stops the server in order: SIGTERM to the whole process group, SIGKILL after a grace period, and
SIGKILL to anything of the group still alive once the engine's main process has gone (engines
start worker processes: vLLM's engine core, TP workers). Its output goes to a log file; a server
that exits or never gets ready is one error carrying the log's last lines.

Ready means three answers in turn: GET /health 200, GET /v1/models with a model, and a one-token
completion (engines answer /health before their first request can be served).
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import orjson

from ..errors import ServerError, UsageError
from .recipe import DEFAULT_PORTS, Launch, Recipe, render

__all__ = ["ServerProcess", "Ready", "free_port", "log_tail", "group_alive", "group_members"]

#: how often start-up polls the server
POLL_S = 0.25
#: lines of the server's log an error shows
TAIL_LINES = 20
#: after SIGKILL, how long stop() waits for the group's last processes to be gone
KILL_WAIT_S = 5.0
#: no proxy for the readiness probes: the server is this machine's
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Ready:
    url: str
    model: str
    startup_s: float
    pgid: int


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def log_tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(the log could not be read)"
    tail = [line.rstrip() for line in text.splitlines()[-lines:]]
    return "\n".join("  | " + line for line in tail) if tail else "  | (the log is empty)"


def group_members(pgid: int) -> list[int]:
    """The live (non-zombie) processes of a process group, from /proc (Linux)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def group_alive(pgid: int) -> bool:
    """Any live process in the group? /proc where there is one (a zombie does not count), else kill(0)."""
    if Path("/proc").is_dir():
        return bool(group_members(pgid))
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


class ServerProcess:
    """`with ServerProcess(recipe, log_path=...) as server: server.ready.url` — started, ready, and
    stopped (with its children) on leaving the block, also on Ctrl-C or an error."""

    def __init__(self, recipe: Recipe, *, log_path: Path, host: str = "127.0.0.1", port: int | None = None,
                 gpus: str | None = None, startup_timeout_s: float | None = None, grace_s: float = 30.0,
                 on_wait=None) -> None:
        self.recipe = recipe
        self.host = host
        self.port = DEFAULT_PORTS[recipe.engine] if port is None else (port or free_port(host))
        self.gpus = gpus
        self.log_path = log_path
        self.startup_timeout_s = recipe.startup_timeout_s if startup_timeout_s is None else startup_timeout_s
        self.grace_s = grace_s
        self._on_wait = on_wait  # called with the phase being waited for, once per phase
        self._proc: subprocess.Popen | None = None
        self._workdir: Path | None = None
        self.launch: Launch | None = None
        self.ready: Ready | None = None

    @property
    def url(self) -> str:
        probe_host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{probe_host}:{self.port}"

    def __enter__(self) -> ServerProcess:
        try:
            self.start()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Launch:
        """Render the recipe and start it in its own process group; returns the command it ran."""
        self._check_port_free()
        self._workdir = Path(tempfile.mkdtemp(prefix="loadgen-serve-"))
        self.launch = render(self.recipe, host=self.host, port=self.port, workdir=self._workdir, gpus=self.gpus)
        for path, text in self.launch.files.items():
            path.write_text(text)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"# loadgen serve {self.recipe.name}: {shlex.join(self.launch.argv)}\n".encode())
            log.flush()
            try:
                self._proc = subprocess.Popen(self.launch.argv, stdin=subprocess.DEVNULL, stdout=log,
                                              stderr=subprocess.STDOUT, env={**os.environ, **self.launch.env},
                                              start_new_session=True)
            except FileNotFoundError:
                raise UsageError(f"{self.launch.argv[0]} not found: install {self.recipe.engine} "
                                 f"{self.recipe.engine_version} (the version {self.recipe.name} was written for) "
                                 "or set the recipe's executable") from None
            except PermissionError:
                raise UsageError(f"{self.launch.argv[0]} is not executable") from None
        self._started = time.monotonic()
        return self.launch

    def _check_port_free(self) -> None:
        """Something already listening there (an earlier server still up) would answer the readiness
        probes in the new server's place."""
        probe_host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        try:
            socket.create_connection((probe_host, self.port), timeout=2).close()
        except OSError:
            return
        raise UsageError(f"port {self.port} on {probe_host} is in use (another server still up?): stop it, or "
                         "pass --port")

    @property
    def pgid(self) -> int:
        assert self._proc is not None, "the server has a process group once start() ran, until stop()"
        return self._proc.pid  # start_new_session: the engine leads its own group

    def wait_ready(self) -> Ready:
        """Poll /health, /v1/models and a one-token completion until all answer, or fail with the log."""
        deadline = self._started + self.startup_timeout_s
        phase, model = "/health", ""
        announced = None
        while True:
            self._check_alive(f"during start-up (waiting for {phase})")
            if time.monotonic() > deadline:
                raise ServerError(f"{self.recipe.name} was not ready after {self.startup_timeout_s:g} s (still waiting "
                                  f"for {phase}; raise --startup-timeout for big models); it was stopped. "
                                  f"Last lines of {self.log_path}:\n{log_tail(self.log_path)}")
            if announced != phase and self._on_wait:
                self._on_wait(phase)
                announced = phase
            if phase == "/health" and self._get("/health") is not None:
                phase = "/v1/models"
            if phase == "/v1/models":
                body = self._get("/v1/models")
                models = body.get("data") if isinstance(body, dict) else None
                if models and isinstance(models[0], dict) and models[0].get("id"):
                    model, phase = str(models[0]["id"]), "a one-token completion"
            if phase == "a one-token completion" and self._one_token(model):
                self.ready = Ready(self.url, model, time.monotonic() - self._started, self.pgid)
                return self.ready
            time.sleep(POLL_S)

    def _get(self, path: str):
        try:
            with _OPENER.open(self.url + path, timeout=5) as resp:
                body = resp.read()
        except (urllib.error.URLError, OSError, ValueError):
            return None
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            return {}

    def _one_token(self, model: str) -> bool:
        body = orjson.dumps({"model": model, "prompt": "Hello", "max_tokens": 1, "temperature": 0.0})
        request = urllib.request.Request(self.url + "/v1/completions", data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            with _OPENER.open(request, timeout=60) as resp:
                return bool(orjson.loads(resp.read()).get("choices"))
        except (urllib.error.URLError, OSError, ValueError, AttributeError):
            return False

    def _check_alive(self, when: str) -> None:
        assert self._proc is not None and self.launch is not None, "checked between start() and stop()"
        code = self._proc.poll()
        if code is not None:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
            raise ServerError(f"{self.recipe.name} ({self.launch.argv[0]}) {how} {when}, "
                              f"{time.monotonic() - self._started:.1f} s after start. "
                              f"Last lines of {self.log_path}:\n{log_tail(self.log_path)}")

    def wait(self) -> None:
        """Block while the server runs; its exit (it should not) is a ServerError with the log."""
        while True:
            self._check_alive("while serving")
            time.sleep(POLL_S)

    def stop(self) -> None:
        """SIGTERM to the group, SIGKILL after the grace period; then nothing of the group is left."""
        proc, self._proc = self._proc, None
        if proc is not None:
            pgid = proc.pid
            try:
                os.killpg(pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + self.grace_s
            while time.monotonic() < deadline and (proc.poll() is None or group_alive(pgid)):
                time.sleep(0.05)
            if proc.poll() is None or group_alive(pgid):
                try:
                    os.killpg(pgid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait()
            # SIGKILL is delivered, not awaited: an orphaned worker may still be running for a moment
            deadline = time.monotonic() + KILL_WAIT_S
            while group_alive(pgid) and time.monotonic() < deadline:
                time.sleep(0.01)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
