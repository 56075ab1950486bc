"""The emulated engine: HTTP routes, generation streams and worker processes."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from . import vllm
from .counters import Counters
from .http import Connection, Request, accept_connections
from .stepper import AcceptanceSampler, Stepper

__all__ = ["EmulatorConfig", "serve"]

_WORDS = [" the", " model", " token", " draft", " step", " verify", " accept", " and", " of", " to",
          " a", " in", " is", " that", " for", " it", " with", " as", " on", " be"]
_TOKEN_IDS = range(32000)


@dataclass(frozen=True)
class EmulatorConfig:
    engine: str = "vllm"
    host: str = "127.0.0.1"
    port: int = 8000
    model: str = "emulator"
    ttft_ms: float = 50.0
    step_ms: float = 20.0
    accept: tuple[float, ...] = (0.8, 0.6, 0.4)
    seed: int = 0
    workers: int = 1
    send_timestamps: bool = False  # add "emulator_sent_ns" (CLOCK_MONOTONIC) to every chunk
    api_key: str | None = None
    max_model_len: int = 131072
    early_ms: float = 0.5  # see Stepper: centres the millisecond timer grid on the schedule
    engines: tuple[str, ...] = field(default=("vllm",), repr=False)

    def __post_init__(self) -> None:
        if self.engine not in self.engines:
            raise ValueError(f"unknown engine {self.engine!r}; choose one of {', '.join(self.engines)}")
        if self.ttft_ms < 0 or self.step_ms <= 0:
            raise ValueError("ttft must be >= 0 ms and step > 0 ms")
        if any(not 0.0 <= p <= 1.0 for p in self.accept):
            raise ValueError("acceptance probabilities must lie in [0, 1]")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")


class Generation:
    """One request's output: chunk i is due at arrival + ttft + i * step."""

    __slots__ = ("app", "conn", "params", "rid", "created", "emitted", "index", "start_ns", "texts", "ids",
                 "encoder")

    def __init__(self, app: App, conn: Connection, params: vllm.GenerationParams, start_ns: int) -> None:
        self.app, self.conn, self.params = app, conn, params
        self.rid = f"cmpl-{app.next_id()}"
        self.created = int(time.time())
        self.emitted = 0
        self.index = 0
        self.start_ns = start_ns
        self.texts: list[str] = []
        self.ids: list[int] = []
        self.encoder = vllm.StreamEncoder(self.rid, self.created, params)

    def due_ns(self, index: int) -> int:
        return self.start_ns + self.app.ttft_ns + index * self.app.step_ns

    def _draw_tokens(self) -> int:
        """Tokens this step produces: 1 after prefill, else 1 + accepted drafts (server counters see the draw)."""
        app = self.app
        if self.index == 0 or not app.sampler.draft_len:
            return 1
        accepted = app.sampler.draw()
        arr, idx = app.counters.array, app.idx
        arr[idx["spec_drafts"]] += 1
        arr[idx["spec_draft_tokens"]] += app.sampler.draft_len
        arr[idx["spec_accepted_tokens"]] += accepted
        for pos in range(accepted):
            arr[idx[f"spec_accepted_pos_{pos}"]] += 1
        return 1 + accepted

    def _tokens(self, n: int) -> tuple[str, list[int]]:
        """Filler text, and token ids only when the client asked for them (cheaper per chunk)."""
        choices = self.app.rng.choices
        ids = choices(_TOKEN_IDS, k=n) if self.params.return_token_ids else []
        return "".join(choices(_WORDS, k=n)), ids

    def step(self, now_ns: int) -> int | None:
        conn, app, params = self.conn, self.app, self.params
        if conn.closed:
            self._close("requests_aborted")
            return None
        due = self.due_ns(self.index)
        n = min(self._draw_tokens(), params.max_tokens - self.emitted)
        self.emitted += n
        self.index += 1
        text, ids = self._tokens(n)
        finish = "length" if self.emitted >= params.max_tokens else None
        app.record_send(due)
        if not params.stream:
            self.texts.append(text)
            self.ids.extend(ids)
            if finish is None:
                return self.due_ns(self.index)
            conn.respond_json(200, vllm.completion_body(self.rid, self.created, params, "".join(self.texts),
                                                        self.ids, finish, self.emitted))
            self._close("requests_finished_length")
            return None
        extra = (b',"emulator_arrival_ns":%d,"emulator_sent_ns":%d' % (self.start_ns, time.monotonic_ns())
                 if app.config.send_timestamps else b"")
        payload = b"data: " + self.encoder.chunk(text, ids, finish, self.emitted, params.prompt_tokens, extra) + b"\n\n"
        if finish is None:
            conn.write_chunk(payload)
            return self.due_ns(self.index)
        if params.include_usage:
            payload += b"data: " + orjson.dumps(vllm.usage_chunk(self.rid, self.created, params, self.emitted)) + b"\n\n"
        conn.end_stream(payload + b"data: [DONE]\n\n")
        self._close("requests_finished_length")
        return None

    def _close(self, outcome: str) -> None:
        arr, idx = self.app.counters.array, self.app.idx
        arr[idx["requests_running"]] -= 1
        arr[idx[outcome]] += 1
        arr[idx["generation_tokens"]] += self.emitted


class App:
    """Routes requests of one worker process; all state is per process except the counters."""

    def __init__(self, config: EmulatorConfig, counters: Counters, worker: int) -> None:
        self.config = config
        self.counters = counters
        self.idx = {name: counters.index(name) for name in counters.names}
        self.rng = random.Random(config.seed * 1_000_003 + worker)
        self.sampler = AcceptanceSampler(config.accept, self.rng)
        self.ttft_ns = int(config.ttft_ms * 1e6)
        self.step_ns = int(config.step_ms * 1e6)
        self.stepper = Stepper(asyncio.get_running_loop(), early_ns=int(config.early_ms * 1e6))
        self.created = int(time.time())
        self._ids = iter(range(worker, sys.maxsize, config.workers))

    def next_id(self) -> int:
        return next(self._ids)

    def record_send(self, due_ns: int) -> None:
        lag = time.monotonic_ns() - due_ns
        arr, idx = self.counters.array, self.idx
        arr[idx["send_lag_ns_sum"]] += lag
        arr[idx["send_lag_count"]] += 1
        if lag > arr[idx["send_lag_ns_max"]]:
            arr[idx["send_lag_ns_max"]] = lag

    def handle(self, conn: Connection, request: Request) -> None:
        now = request.received_ns
        if self.config.api_key is not None and request.path.startswith("/v1/"):
            if request.headers.get("authorization") != f"Bearer {self.config.api_key}":
                conn.respond_json(401, vllm.error_body(401, "Unauthorized"))
                return
        route = (request.method, request.path)
        if route == ("GET", "/health"):
            conn.respond(200, b"")
        elif route == ("GET", "/v1/models"):
            conn.respond_json(200, vllm.models_body(self.config.model, self.created, self.config.max_model_len))
        elif route == ("GET", "/metrics"):
            totals = self.counters.totals()
            text = vllm.metrics_text(totals, self.counters.per_position(totals), self.config.model,
                                     speculative=bool(self.config.accept))
            conn.respond(200, text.encode(), "text/plain; version=0.0.4; charset=utf-8")
        elif route == ("POST", "/v1/completions"):
            self._completions(conn, request, now)
        elif request.path in ("/health", "/v1/models", "/metrics", "/v1/completions"):
            conn.respond_json(405, vllm.error_body(405, "Method Not Allowed"))
        else:
            conn.respond_json(404, vllm.error_body(404, f"Not Found: {request.path}"))

    def _completions(self, conn: Connection, request: Request, now: int) -> None:
        try:
            params = vllm.parse_completion_request(orjson.loads(request.body), self.config.model)
        except orjson.JSONDecodeError:
            conn.respond_json(400, vllm.error_body(400, "request body is not valid JSON"))
            return
        except vllm.RequestRejected as exc:
            conn.respond_json(exc.status, vllm.error_body(exc.status, str(exc)))
            return
        arr, idx = self.counters.array, self.idx
        arr[idx["requests_total"]] += 1
        arr[idx["requests_running"]] += 1
        arr[idx["prompt_tokens"]] += params.prompt_tokens
        gen = Generation(self, conn, params, now)
        if params.stream:
            conn.begin_stream()
        self.stepper.schedule(gen.due_ns(0), gen.step)


async def _serve_worker(config: EmulatorConfig, counters: Counters, worker: int, sock: socket.socket,
                        listening: Callable[[], object]) -> None:
    counters.row = worker
    loop = asyncio.get_running_loop()
    app = App(config, counters, worker)
    accept_connections(sock, loop, app.handle)
    listening()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    loop.remove_reader(sock.fileno())
    sock.close()


def _listening_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _run_loop(coro) -> None:
    try:
        import uvloop
        uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        asyncio.run(coro)


def _worker_main(config: EmulatorConfig, counters: Counters, worker: int, port: int,
                 ready: multiprocessing.synchronize.Event) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    sock = _listening_socket(config.host, port)
    sock.listen(4096)
    _run_loop(_serve_worker(config, counters, worker, sock, ready.set))


def serve(config: EmulatorConfig, on_ready=None) -> None:
    """Serve until SIGINT/SIGTERM. Workers share the port through SO_REUSEPORT, so the kernel spreads
    connections over them; `on_ready(port)` is called once every worker listens."""
    counters = Counters(config.workers, len(config.accept))
    # Bound but never listening: it only reserves the port (also port 0 -> a free one) and so
    # receives no connections.
    reserve = _listening_socket(config.host, config.port)
    port = reserve.getsockname()[1]
    if config.workers == 1:
        reserve.listen(4096)
        _run_loop(_serve_worker(config, counters, 0, reserve, lambda: on_ready and on_ready(port)))
        return
    ctx = multiprocessing.get_context("fork")
    events = [ctx.Event() for _ in range(config.workers)]
    procs = [ctx.Process(target=_worker_main, args=(config, counters, w, port, events[w]), daemon=True)
             for w in range(config.workers)]
    for p in procs:
        p.start()
    for event, proc in zip(events, procs):
        while not event.wait(0.1):
            if not proc.is_alive():
                raise RuntimeError(f"emulator worker exited with code {proc.exitcode}")
    if on_ready:
        on_ready(port)
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.append(1))
    while not stop and all(p.is_alive() for p in procs):
        time.sleep(0.2)
    for p in procs:
        if p.is_alive():
            os.kill(p.pid, signal.SIGTERM)
    for p in procs:
        p.join(5)
    reserve.close()
