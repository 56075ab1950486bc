"""The load, shared among processes: each runs a closed loop over its part of the concurrency and
the prompt order, with its own event loop, connections and sockets.

One Python process tops out at some hundreds of streams before it reads chunks late (the kernel
stamps keep the timestamps right, but its requests go out late and the load sags). `LocalShare`
runs a share in this process; `WorkerPool` runs N shares in child processes (`python -m
loadgen.workers`) behind the same interface, and the parent merges what they send: finished
records (journal, report, progress) and their read-lag histograms. CLOCK_MONOTONIC is one clock
for every process on the machine, so records from local workers mix as they are; workers on
other machines (Ray, ray_workers.py) have their clock offsets measured at start and their records
moved onto the parent's clock.

Parent and worker talk over one stream socket per worker (a socketpair, or TCP for Ray) in the
messages of worker_messages.py: the setup, then phases, stop and cancel one way; ready, each
request's begin and record, the phase's end and clock readings the other. A worker whose parent
vanished (EOF) cancels its requests and exits. A lost worker's requests in flight (begun, not
ended) become failed records (worker_lost); `on_loss` says whether the run stops or goes on
without it.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from .config import RunConfig
from .engines import EngineAdapter, get_adapter
from .errors import LoadgenError, WorkerLost
from .records import ErrorInfo, RequestRecord
from .scheduler import closed_loop, open_loop, stepped_closed_loop
from .sender import Sender, needs_tokenizer
from .transport import HttpClient, ReadLag
from .wiring import http_client, workload_spec
from .worker_messages import (
    Begin,
    Cancel,
    ClockReading,
    ClockRequest,
    Failed,
    Finished,
    Message,
    Phase,
    PhaseDone,
    Ready,
    Stop,
    WorkerSetup,
    decode,
    encode,
    encode_setup,
    read_setup,
)
from .workloads import ChatTokenizer, Prompt, load_tokenizer, load_workload

__all__ = ["LocalShare", "WorkerPool", "Worker", "Plan", "split", "split_arrivals", "split_levels", "auto_workers",
           "serve_worker", "run_worker", "send_setup", "STREAMS_PER_WORKER"]

OnRecord = Callable[[RequestRecord, bool], None]
#: Sender's arguments between the client and on_record: adapter, model, config, tokenizer
SenderArgs = tuple[EngineAdapter, str, RunConfig, ChatTokenizer | None]

#: streams one process keeps on time (measured on 2 cores: benchmarks/client_fidelity.py)
STREAMS_PER_WORKER = 512
_MAX_LINE = 1 << 28  # one record of a 32k-token reply is ~1 MB of JSON; leave room
#: clock offset: round trips per worker; the one with the shortest round trip gives the estimate
CLOCK_ROUNDS = 16
#: open loop with workers: the phase starts this long after the parent sends its start time
START_MARGIN_NS = 50_000_000


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
    #: --concurrency-levels: this share's slots in each level (the measured phase); None: one level
    levels: Sequence[int] | None = None


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


def split_levels(workers: int, levels: Sequence[int], warmup: Sequence[int], measured: Sequence[int]) -> list[Plan]:
    """--concurrency-levels: every level's concurrency split as `split` splits one (a share may
    have no slot in a small level), each share cycling its own slice of the prompts; the warm-up
    split by the first level's concurrency, at which it runs."""
    n = max(1, min(workers, max(levels)))

    def share(concurrency: int, i: int) -> int:
        return concurrency // n + (i < concurrency % n)

    first = [share(levels[0], i) for i in range(n)]
    bounds = [0, *(len(warmup) * upto // levels[0] for upto in itertools.accumulate(first))]
    return [Plan(i, n, first[i], warmup[bounds[i]:bounds[i + 1]], measured[i::n] or measured, True,
                 levels=tuple(share(c, i) for c in levels)) for i in range(n)]


def split_arrivals(workers: int, warmup: Sequence[int], measured: Sequence[int], warmup_offsets: Sequence[int],
                   measured_offsets: Sequence[int]) -> list[Plan]:
    """Open loop: the arrivals dealt round-robin, so together the workers send exactly the one
    schedule computed up front."""
    n = max(1, min(workers, len(measured)))
    return [Plan(i, n, 0, warmup[i::n], measured[i::n], False, warmup_offsets[i::n], measured_offsets[i::n])
            for i in range(n)]


class LocalShare:
    """A share run in this process."""

    def __init__(self, client: HttpClient, sender_args: SenderArgs,
                 prompts: Sequence[Prompt] | Mapping[int, Prompt], plan: Plan,
                 on_record: OnRecord, on_begin: Callable[[RequestRecord], None] | None = None) -> None:
        self.client, self.plan = client, plan
        self._warmup = [prompts[i] for i in plan.warmup]
        self._measured = [prompts[i] for i in plan.measured]
        self.sender = Sender(client, *sender_args, on_record, first_id=plan.index, id_step=plan.workers,
                             on_begin=on_begin)
        level_s = sender_args[2].level_duration_s
        self._level_ns = int(level_s * 1e9) if level_s else 0
        self._stopping = False
        self._task: asyncio.Future | None = None

    @property
    def in_flight(self) -> int:
        return self.sender.in_flight

    async def prepare(self) -> None:
        """Request bodies serialized and connections opened before the clock starts."""
        self.sender.prepare(self._warmup + self._measured)
        await self.client.open_connections(max((self.plan.concurrency, *(self.plan.levels or ()))), "/v1/models")

    async def phase(self, warmup: bool, deadline_ns: int | None, start_ns: int | None = None) -> None:
        """One phase: closed loop, or open loop (the plan has send times) from start_ns (else now),
        or the measured phase stepping through the plan's levels from start_ns (else now)."""
        prompts = self._warmup if warmup else self._measured
        if not prompts:
            return

        async def send(prompt: Prompt, scheduled_ns: int) -> None:
            await self.sender.send(prompt, scheduled_ns, warmup)

        offsets = self.plan.warmup_offsets if warmup else self.plan.measured_offsets
        if self.plan.levels is not None and not warmup:
            loop = stepped_closed_loop(itertools.cycle(prompts), self.plan.levels, self._level_ns,
                                       start_ns or time.monotonic_ns(), send, stopping=lambda: self._stopping)
        elif offsets is not None:
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

    def workers_summary(self) -> dict | None:
        """No worker processes: the report has no workers section."""
        return None


class Worker:
    """The parent's handle on one worker: its connection, where it runs, what it has in flight,
    and its clock's offset from the parent's (worker minus parent; 0 on this machine)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, where: str,
                 exit_status: Callable[[], Awaitable[str]], reap: Callable[[], Awaitable[None]],
                 node: str = "this machine") -> None:
        self.reader, self.writer, self.where, self.node = reader, writer, where, node
        self._exit_status = exit_status
        self.reap = reap  # after EOF: wait for the worker to end, kill it if it does not
        self.in_flight = 0
        self.begun: dict[int, Begin] = {}  # request id -> its begin, until its record arrives
        self.offset_ns = 0
        self.offset_bound_ns: int | None = None  # None: the same clock, no estimate needed
        self.lost = False

    def send(self, message: Message) -> None:
        if not self.writer.is_closing():
            self.writer.write(encode(message))

    async def receive(self) -> Message:
        line = await self.reader.readline()
        if not line:
            status = await self._exit_status()
            raise WorkerLost(f"a load worker ({self.where}) was lost: {status}")
        return decode(line)

    async def measure_clock(self) -> None:
        """Offset of the worker's monotonic clock: of CLOCK_ROUNDS round trips, the shortest brackets
        the worker's reading best; the offset is exact to within half that round trip."""
        best: tuple[int, int] | None = None  # (round trip, offset)
        for _ in range(CLOCK_ROUNDS):
            before = time.monotonic_ns()
            self.send(ClockRequest())
            reply = await self.receive()
            after = time.monotonic_ns()
            assert isinstance(reply, ClockReading), "a worker answers a ClockRequest with its ClockReading"
            if best is None or after - before < best[0]:
                best = (after - before, reply.monotonic_ns - (before + after) // 2)
        assert best is not None, "CLOCK_ROUNDS >= 1"
        self.offset_bound_ns = (best[0] + 1) // 2
        self.offset_ns = best[1]


async def _local_process(setup: WorkerSetup) -> Worker:
    """A worker as a child process of this one, over a socketpair."""
    parent, child = socket.socketpair()
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "loadgen.workers", str(child.fileno()), pass_fds=(child.fileno(),),
            stdin=asyncio.subprocess.DEVNULL)
    finally:
        child.close()
    reader, writer = await asyncio.open_connection(sock=parent, limit=_MAX_LINE)

    async def exit_status() -> str:
        return f"it exited with status {await process.wait()} (any error it printed is above)"

    async def reap() -> None:
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()

    worker = Worker(reader, writer, where=f"process {process.pid}", exit_status=exit_status, reap=reap)
    send_setup(worker, setup)
    return worker


def send_setup(worker: Worker, setup: WorkerSetup) -> None:
    worker.writer.write(encode_setup(setup))


class WorkerPool:
    """Shares run in worker processes, driven like one LocalShare. `start` makes the workers: child
    processes of this one by default, Ray actors with ray_workers.RayLauncher (whose clocks are
    measured). on_loss: "stop" (a lost worker ends the run: the others cancel, the error is raised)
    or "continue" (its in-flight requests fail as worker_lost and the others go on)."""

    def __init__(self, config: RunConfig, url: str, model: str, engine: str, plans: list[Plan],
                 on_record: OnRecord, *, start: Callable[[list[WorkerSetup]], Awaitable[list[Worker]]] | None = None,
                 measure_clocks: bool = False, ship: Sequence[Prompt] | None = None, on_loss: str = "stop") -> None:
        """ship: the workload's prompts, each worker to get the ones its plan names (else it loads the
        workload from this machine's cache)."""
        self._setup = [WorkerSetup(config, url, model, engine, plan, None if ship is None else
                                   {i: ship[i] for i in (*plan.warmup, *plan.measured)}) for plan in plans]
        self._ray = config.ray
        self._on_record = on_record
        self._start = start or (lambda setups: asyncio.gather(*(_local_process(s) for s in setups)))
        self._measure_clocks = measure_clocks
        self._on_loss = on_loss
        self._workers: list[Worker] = []
        self._read_lag = ReadLag()
        #: workers lost during the run: {"worker", "where", "at_s" (since the first phase), "in_flight_failed",
        #: "reason"}
        self.lost: list[dict] = []
        self._first_phase_ns = 0

    @property
    def in_flight(self) -> int:
        return sum(w.in_flight for w in self._workers)

    @property
    def clocks(self) -> list[dict]:
        """Per worker: where it runs (and on which node), its clock offset and the offset's error bound (ns)."""
        return [{"worker": i, "where": w.where, "node": w.node, "offset_ns": w.offset_ns,
                 "error_bound_ns": w.offset_bound_ns} for i, w in enumerate(self._workers)]

    async def prepare(self) -> None:
        self._workers = list(await self._start(self._setup))
        for worker in self._workers:
            message = await worker.receive()
            if isinstance(message, Failed):
                raise LoadgenError(message.error)
        if self._measure_clocks:
            for worker in self._workers:
                await worker.measure_clock()

    async def phase(self, warmup: bool, deadline_ns: int | None, start_ns: int | None = None) -> None:
        """Every worker runs its share of the phase. Open loop: the first send START_MARGIN_NS after
        start_ns, so that every worker has received its start time before that time comes."""
        self._first_phase_ns = self._first_phase_ns or time.monotonic_ns()
        start_ns = None if start_ns is None else start_ns + START_MARGIN_NS
        running = [w for w in self._workers if not w.lost]
        for worker in running:  # the parent's times, on each worker's clock
            worker.send(Phase(warmup, None if deadline_ns is None else deadline_ns + worker.offset_ns,
                              None if start_ns is None else start_ns + worker.offset_ns))
        results = await asyncio.gather(*(self._drain(worker) for worker in running), return_exceptions=True)
        # One worker lost: the others were told to cancel (see _drain) and have reported back.
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _drain(self, worker: Worker) -> None:
        """Hand on the worker's records until it reports the phase done. If it is lost, its requests
        in flight fail; then either the others cancel theirs (the run ends with everything that
        finished) or they go on without it."""
        while True:
            try:
                message = await worker.receive()
            except WorkerLost as exc:
                self._lose(worker, exc)
                if self._on_loss == "continue":
                    return
                self.cancel()
                raise
            if isinstance(message, Begin):
                worker.begun[message.request_id] = message
            elif isinstance(message, Finished):
                worker.in_flight = message.in_flight
                record = message.record
                worker.begun.pop(record.request_id, None)
                if worker.offset_ns:
                    record.shift(-worker.offset_ns)
                self._on_record(record, message.conversation_done)
            elif isinstance(message, PhaseDone):
                worker.in_flight = 0
                self._read_lag.merge(message.read_lag)
                return
            elif isinstance(message, Failed):
                raise LoadgenError(message.error)

    def _lose(self, worker: Worker, exc: WorkerLost) -> None:
        """The lost worker's begun requests become failed records, on this clock, now."""
        worker.lost = True
        now = time.monotonic_ns()
        for begun in worker.begun.values():
            record = RequestRecord(begun.request_id, begun.category, begun.turn, begun.prompt_tokens,
                                   begun.max_tokens, begun.scheduled_ns - worker.offset_ns, begun.warmup,
                                   sub_category=begun.sub_category, sent_ns=begun.scheduled_ns - worker.offset_ns,
                                   end_ns=now, error=ErrorInfo("worker_lost", str(exc)))
            self._on_record(record, True)
        self.lost.append({"worker": self._workers.index(worker), "where": worker.where,
                          "at_s": round((now - (self._first_phase_ns or now)) / 1e9, 3),
                          "in_flight_failed": len(worker.begun), "reason": str(exc)})
        worker.begun.clear()
        worker.in_flight = 0

    def stop(self) -> None:
        for worker in self._workers:
            worker.send(Stop())

    def cancel(self) -> None:
        for worker in self._workers:
            worker.send(Cancel())

    def read_lag(self) -> ReadLag:
        return self._read_lag

    def reset_read_lag(self) -> None:
        self._read_lag = ReadLag()

    async def close(self) -> None:
        for worker in self._workers:
            worker.writer.close()  # EOF: the worker cancels whatever is left and exits
        await asyncio.gather(*(worker.reap() for worker in self._workers))

    def workers_summary(self) -> dict:
        """The report's workers section: how many, on which Ray cluster, what a loss did, each
        worker's clock and the workers lost."""
        return {"count": len(self._setup), "ray": self._ray, "on_loss": self._on_loss, "clocks": self.clocks,
                "lost": self.lost}


async def serve_worker(sock: socket.socket) -> None:
    """The worker side (a child process or a Ray actor): set up, report ready, then run phases as
    the parent asks."""
    reader, writer = await asyncio.open_connection(sock=sock, limit=_MAX_LINE)

    def send(message: Message) -> None:
        writer.write(encode(message))

    setup = await read_setup(reader)
    config = setup.config
    try:
        # the prompts the parent shipped (another machine), else the parent's spec: the same cached prompts
        prompts = setup.prompts if setup.prompts is not None else load_workload(workload_spec(config)).prompts
        multi_turn = any(p.followups for p in (prompts.values() if isinstance(prompts, dict) else prompts))
        tokenizer = load_tokenizer(config.tokenizer) if needs_tokenizer(config, get_adapter(setup.engine),
                                                                        multi_turn) else None
    except LoadgenError as exc:
        send(Failed(str(exc)))
        await writer.drain()
        return
    client = http_client(config, setup.url)
    share: LocalShare | None = None

    def on_record(record: RequestRecord, done: bool) -> None:
        send(Finished(record, done, share.in_flight if share else 0))

    def on_begin(record: RequestRecord) -> None:
        send(Begin.of(record))

    share = LocalShare(client, (get_adapter(setup.engine), setup.model, config, tokenizer), prompts, setup.plan,
                       on_record, on_begin)
    try:
        await share.prepare()
        gc.collect()
        gc.freeze()
        send(Ready())
        running: asyncio.Task | None = None
        while line := await reader.readline():
            message = decode(line)
            if isinstance(message, Phase):
                running = asyncio.ensure_future(_phase(share, message, send))
            elif isinstance(message, Stop):
                share.stop()
            elif isinstance(message, Cancel):
                share.cancel()
            elif isinstance(message, ClockRequest):
                send(ClockReading(time.monotonic_ns()))
        share.cancel()  # the parent is gone
        if running is not None:
            await asyncio.gather(running, return_exceptions=True)
    finally:
        await share.close()
        writer.close()


async def _phase(share: LocalShare, phase: Phase, send: Callable[[Message], None]) -> None:
    try:
        if not phase.warmup:
            share.reset_read_lag()
        await share.phase(phase.warmup, phase.deadline_ns, phase.start_ns)
    except Exception as exc:  # a bug: tell the parent rather than leave it waiting
        send(Failed(f"load worker {share.plan.index} failed: {exc!r}"))
        raise
    send(PhaseDone(share.read_lag()))


def run_worker(sock: socket.socket) -> None:
    """Serve the parent over SOCK until it is done with this worker (its own event loop)."""
    try:
        import uvloop
        uvloop.run(serve_worker(sock))
    except ImportError:  # pragma: no cover
        asyncio.run(serve_worker(sock))


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent decides
    run_worker(socket.socket(fileno=int(sys.argv[1])))


if __name__ == "__main__":
    main()
