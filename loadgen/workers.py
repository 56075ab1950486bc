"""The load, shared among processes: each runs a closed loop over its part of the concurrency and
the prompt order, with its own event loop, connections and sockets.

One Python process tops out at some hundreds of streams before it reads chunks late (the kernel
stamps keep the timestamps right, but its requests go out late and the load sags). `LocalShare`
runs a share in this process; `WorkerPool` runs N shares in child processes (`python -m
loadgen.workers`) behind the same interface, and the parent merges what they send: finished
records (journal, report, progress) and their read-lag histograms. CLOCK_MONOTONIC is one clock
for every process on the machine, so records from all workers mix as they are.

Parent <-> worker protocol, over one socketpair per worker: the parent first sends the setup
(8-byte length + pickle), then both sides exchange JSON lines. Parent: {"op": "phase", "warmup",
"deadline_ns"}, {"op": "stop"} (no new requests), {"op": "cancel"} (cancel those in flight).
Worker: {"ready": true}, {"record", "done", "in_flight"} per finished request, {"phase_done",
"read_lag"}, {"error"}. A worker whose parent vanished (EOF) cancels its requests and exits.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import pickle
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson

from .config import RunConfig
from .engines import get_adapter
from .errors import LoadgenError, WorkerLost
from .records import RequestRecord
from .scheduler import closed_loop, open_loop
from .sender import Sender
from .transport import HttpClient, ReadLag
from .workloads import Prompt, load_tokenizer, load_workload

__all__ = ["LocalShare", "WorkerPool", "Plan", "split", "split_arrivals", "auto_workers"]

OnRecord = Callable[[RequestRecord, bool], None]

#: streams one process keeps on time (measured on 2 cores: benchmarks/client_fidelity.py)
STREAMS_PER_WORKER = 512
_MAX_LINE = 1 << 28  # one record of a 32k-token reply is ~1 MB of JSON; leave room


def auto_workers(concurrency: int) -> int:
    """--workers auto: one process per STREAMS_PER_WORKER streams, at most one per core this
    process may run on (a container's CPU set, not the host's count)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, -(-concurrency // STREAMS_PER_WORKER)))


@dataclass(frozen=True)
class Plan:
    """One share: its concurrency and its prompts, as indices into the workload's prompt list."""

    index: int
    workers: int
    concurrency: int
    warmup: Sequence[int]
    measured: Sequence[int]
    cycle: bool  # duration-bound: go round `measured` until the deadline
    #: open loop (--request-rate): each prompt's send time, ns from the phase's start; None: closed loop
    warmup_offsets: Sequence[int] | None = None
    measured_offsets: Sequence[int] | None = None


def split(workers: int, concurrency: int, warmup: Sequence[int], measured: Sequence[int], cycle: bool) -> list[Plan]:
    """Concurrency split as evenly as it goes; each share's prompts in proportion to its concurrency
    (so all shares end together), taken in order so every share gets the category mix."""
    workers = max(1, min(workers, concurrency))
    shares = [concurrency // workers + (i < concurrency % workers) for i in range(workers)]

    def portions(items: Sequence[int], cyclic: bool) -> list[Sequence[int]]:
        if cyclic:
            return [items[i::workers] or items for i in range(workers)]  # each goes round its own slice
        bounds = [0, *(len(items) * upto // concurrency for upto in itertools.accumulate(shares))]
        return [items[a:b] for a, b in itertools.pairwise(bounds)]

    return [Plan(i, workers, c, w, m, cycle) for i, (c, w, m) in
            enumerate(zip(shares, portions(warmup, False), portions(measured, cycle), strict=True))]


def split_arrivals(workers: int, warmup: Sequence[int], measured: Sequence[int], warmup_offsets: Sequence[int],
                   measured_offsets: Sequence[int]) -> list[Plan]:
    """Open loop: the arrivals dealt round-robin, so together the workers send exactly the one
    schedule computed up front."""
    n = max(1, min(workers, len(measured)))
    return [Plan(i, n, 0, warmup[i::n], measured[i::n], False, warmup_offsets[i::n], measured_offsets[i::n])
            for i in range(n)]


class LocalShare:
    """A share run in this process."""

    def __init__(self, client: HttpClient, sender_args: tuple, prompts: Sequence[Prompt], plan: Plan,
                 on_record: OnRecord) -> None:
        self.client, self.plan = client, plan
        self._warmup = [prompts[i] for i in plan.warmup]
        self._measured = [prompts[i] for i in plan.measured]
        self.sender = Sender(client, *sender_args, on_record, first_id=plan.index, id_step=plan.workers)
        self._stopping = False
        self._task: asyncio.Future | None = None

    @property
    def in_flight(self) -> int:
        return self.sender.in_flight

    async def prepare(self) -> None:
        """Request bodies serialized and connections opened before the clock starts."""
        self.sender.prepare(self._warmup + self._measured)
        await self.client.open_connections(self.plan.concurrency, "/v1/models")

    async def phase(self, warmup: bool, deadline_ns: int | None, start_ns: int | None = None) -> None:
        """One phase: closed loop, or open loop (the plan has send times) from start_ns."""
        prompts = self._warmup if warmup else self._measured
        if not prompts:
            return

        async def send(prompt: Prompt, scheduled_ns: int) -> None:
            await self.sender.send(prompt, scheduled_ns, warmup)

        offsets = self.plan.warmup_offsets if warmup else self.plan.measured_offsets
        if offsets is not None:
            loop = open_loop(iter(prompts), offsets, start_ns or time.monotonic_ns(), send,
                             stopping=lambda: self._stopping)
        else:
            cycle = self.plan.cycle and not warmup
            limit = None if cycle else len(prompts)
            concurrency = self.plan.concurrency if cycle else min(self.plan.concurrency, len(prompts))
            loop = closed_loop(itertools.cycle(prompts) if cycle else iter(prompts), concurrency, send, limit=limit,
                               deadline_ns=deadline_ns, stopping=lambda: self._stopping)
        self._task = asyncio.ensure_future(loop)
        try:
            await self._task
        except asyncio.CancelledError:
            if not self._stopping:
                raise

    def stop(self) -> None:
        self._stopping = True

    def cancel(self) -> None:
        self._stopping = True
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def read_lag(self) -> ReadLag:
        return self.client.read_lag

    def reset_read_lag(self) -> None:
        self.client.reset_read_lag()

    async def close(self) -> None:
        await self.client.close()


class _Worker:
    """The parent's handle on one child process."""

    def __init__(self, process: asyncio.subprocess.Process, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.process, self.reader, self.writer = process, reader, writer
        self.in_flight = 0

    def send(self, message: dict) -> None:
        if not self.writer.is_closing():
            self.writer.write(orjson.dumps(message) + b"\n")

    async def receive(self) -> dict:
        line = await self.reader.readline()
        if not line:
            code = await self.process.wait()
            raise WorkerLost(f"a load worker exited unexpectedly (exit status {code}; any error it printed is above)")
        return orjson.loads(line)


class WorkerPool:
    """Shares run in child processes, driven like one LocalShare."""

    def __init__(self, config: RunConfig, url: str, model: str, engine: str, plans: list[Plan],
                 on_record: OnRecord) -> None:
        self._setup = [(config, url, model, engine, plan) for plan in plans]
        self._on_record = on_record
        self._workers: list[_Worker] = []
        self._read_lag = ReadLag()

    @property
    def in_flight(self) -> int:
        return sum(w.in_flight for w in self._workers)

    async def prepare(self) -> None:
        await asyncio.gather(*(self._start(setup) for setup in self._setup))
        for worker in self._workers:
            message = await worker.receive()
            if "error" in message:
                raise LoadgenError(message["error"])

    async def _start(self, setup: tuple) -> None:
        parent, child = socket.socketpair()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "loadgen.workers", str(child.fileno()), pass_fds=(child.fileno(),),
                stdin=asyncio.subprocess.DEVNULL)
        finally:
            child.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent, limit=_MAX_LINE)
        blob = pickle.dumps(setup)
        writer.write(struct.pack("<Q", len(blob)) + blob)
        self._workers.append(_Worker(process, reader, writer))

    async def phase(self, warmup: bool, deadline_ns: int | None, start_ns: int | None = None) -> None:
        for worker in self._workers:
            worker.send({"op": "phase", "warmup": warmup, "deadline_ns": deadline_ns, "start_ns": start_ns})
        results = await asyncio.gather(*(self._drain(worker) for worker in self._workers), return_exceptions=True)
        # One worker lost: the others were told to cancel (see _drain) and have reported back.
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _drain(self, worker: _Worker) -> None:
        """Hand on the worker's records until it reports the phase done. If it dies, the others
        cancel what they have in flight, so the run ends with everything that finished."""
        while True:
            try:
                message = await worker.receive()
            except WorkerLost:
                self.cancel()
                raise
            if "record" in message:
                worker.in_flight = message["in_flight"]
                self._on_record(RequestRecord.from_json(message["record"]), message["done"])
            elif "phase_done" in message:
                worker.in_flight = 0
                self._read_lag.merge(ReadLag.from_json(message["read_lag"]))
                return
            elif "error" in message:
                raise LoadgenError(message["error"])

    def stop(self) -> None:
        for worker in self._workers:
            worker.send({"op": "stop"})

    def cancel(self) -> None:
        for worker in self._workers:
            worker.send({"op": "cancel"})

    def read_lag(self) -> ReadLag:
        return self._read_lag

    def reset_read_lag(self) -> None:
        self._read_lag = ReadLag()

    async def close(self) -> None:
        for worker in self._workers:
            worker.writer.close()  # EOF: the worker cancels whatever is left and exits
        for worker in self._workers:
            try:
                await asyncio.wait_for(worker.process.wait(), 10)
            except asyncio.TimeoutError:
                worker.process.kill()
                await worker.process.wait()


async def _serve(sock: socket.socket) -> None:
    """The worker side: set up, report ready, then run phases as the parent asks."""
    reader, writer = await asyncio.open_unix_connection(sock=sock, limit=_MAX_LINE)

    def send(message: dict) -> None:
        writer.write(orjson.dumps(message, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")

    (size,) = struct.unpack("<Q", await reader.readexactly(8))
    config, url, model, engine, plan = pickle.loads(await reader.readexactly(size))
    try:
        workload = load_workload(config.workload_spec())  # the parent's spec: the same (cached) prompts
        tokenizer = load_tokenizer(config.tokenizer) if workload.multi_turn else None
    except LoadgenError as exc:
        send({"error": str(exc)})
        await writer.drain()
        return
    client = config.client(url)
    share: LocalShare | None = None

    def on_record(record: RequestRecord, done: bool) -> None:
        send({"record": record.to_json(), "done": done, "in_flight": share.in_flight if share else 0})

    share = LocalShare(client, (get_adapter(engine), model, config, tokenizer), workload.prompts, plan, on_record)
    try:
        await share.prepare()
        gc.collect()
        gc.freeze()
        send({"ready": True})
        running: asyncio.Task | None = None
        while line := await reader.readline():
            message = orjson.loads(line)
            if message["op"] == "phase":
                running = asyncio.ensure_future(_phase(share, message, send))
            elif message["op"] == "stop":
                share.stop()
            elif message["op"] == "cancel":
                share.cancel()
        share.cancel()  # the parent is gone
        if running is not None:
            await asyncio.gather(running, return_exceptions=True)
    finally:
        await share.close()
        writer.close()


async def _phase(share: LocalShare, message: dict, send: Callable[[dict], None]) -> None:
    try:
        if not message["warmup"]:
            share.reset_read_lag()
        await share.phase(message["warmup"], message["deadline_ns"], message.get("start_ns"))
    except Exception as exc:  # a bug: tell the parent rather than leave it waiting
        send({"error": f"load worker {share.plan.index} failed: {exc!r}"})
        raise
    send({"phase_done": True, "read_lag": share.read_lag().to_json()})


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent decides
    sock = socket.socket(fileno=int(sys.argv[1]))
    try:
        import uvloop
        uvloop.run(_serve(sock))
    except ImportError:  # pragma: no cover
        asyncio.run(_serve(sock))


if __name__ == "__main__":
    main()
