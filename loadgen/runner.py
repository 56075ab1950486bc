"""Wires the stages for one run: workload -> scheduler -> transport -> records -> analysis -> sinks."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import secrets
import signal
import time
from datetime import datetime, timezone
from pathlib import Path

import orjson
from rich.console import Console

from . import __version__
from .analysis import Report, WorkersInfo, build_report
from .analysis.slo import parse_slo
from .config import RunConfig
from .emulator.launch import EmulatorProcess
from .engines import ENGINES, EngineAdapter, detect_engine, get_adapter
from .errors import OutputError, ServerError, ServerNotReady, UsageError, WorkerLost
from .records import Journal, RequestRecord, StreamRecorder, read_journal
from .sinks import LiveMetrics, RunProgress, print_summary, write_json_atomic, write_requests_csv
from .sinks.plots import render_run
from .transport import ExchangeError, HttpClient, TransportError
from .sender import COMPLETIONS
from .scheduler import arrival_offsets
from .workers import LocalShare, WorkerPool, auto_workers, split, split_arrivals
from .wiring import http_client, workload_spec
from .workloads import Workload, load_tokenizer, load_workload, round_robin

__all__ = ["run", "prepare_output_dir", "rebuild_report", "rerender_report", "emulator_args", "RUN_FILE"]

#: the run's settings, written before the first request (for `loadgen report DIR`)
RUN_FILE = "run.json"

#: in-flight requests get this long to finish after Ctrl-C before they are cancelled
INTERRUPT_GRACE_S = 5.0
#: open loop with workers: the phase starts this long after the parent sends its start time
START_MARGIN_NS = 50_000_000
#: --max-error-rate is judged only after this many measured requests finished
MIN_ERROR_SAMPLE = 20
#: how often server metrics are sampled during the run
SERVER_POLL_S = 1.0


def prepare_output_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"cannot write to output directory {path}: {exc.strerror}; "
                          "pass --output-dir with a writable folder") from exc
    return path


def emulator_args(config: RunConfig, concurrency: int | None = None) -> list[str]:
    """`loadgen emulate` flags for the built-in emulator: one process up to 256 streams, else two."""
    emu = config.emulator
    workers = emu.workers or (1 if (concurrency or config.concurrency) <= 256 else 2)
    return ["--ttft-ms", str(emu.ttft_ms), "--step-ms", str(emu.step_ms),
            "--accept", ",".join(map(str, emu.accept)), "--seed", str(config.seed), "--workers", str(workers)]


def run(config: RunConfig, console: Console) -> Report:
    """Run one benchmark and return its report; writes requests.jsonl and report.json."""
    out = prepare_output_dir(config.output_dir)
    workload = load_workload(workload_spec(config))
    with contextlib.ExitStack() as stack:
        url = config.url
        if url is None:
            emulator = stack.enter_context(EmulatorProcess(emulator_args(config)))
            url = emulator.url
            console.print(f"[dim]no --url: running against the built-in emulator at {url}[/]")
        return _run_loop(_Run(config, url, workload, out, console).execute())


def rerender_report(out: Path, console: Console, *, rebuild: bool = False) -> Report:
    """`loadgen report DIR`: the run's pictures and HTML drawn again from its report.json, which is
    rebuilt from the journal first where it is missing (a killed run) or `rebuild` asks for it."""
    existing = out / "report.json"
    if rebuild or not existing.exists():
        return rebuild_report(out, console)
    try:
        data = orjson.loads(existing.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"{existing} is not valid JSON ({exc}); use --rebuild to make it again") from None
    try:
        report = Report.from_json(data)
    except ValueError as exc:
        raise UsageError(f"{existing} is not a loadgen report ({exc}); use --rebuild to make it again") from None
    print_summary(console, report)
    console.print(f"[dim]drawn again: {render_run(report, out)}[/]")
    return report


def rebuild_report(out: Path, console: Console) -> Report:
    """The report of a run rebuilt from its journal (requests.jsonl) and run.json, for a run that
    was killed before it could write one. The engine's metrics were not kept: no server figures."""
    try:
        run_info = orjson.loads((out / RUN_FILE).read_bytes())
    except FileNotFoundError:
        raise UsageError(f"{out} has no {RUN_FILE}: not the output directory of a loadgen run") from None
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"{out / RUN_FILE} is not valid JSON ({exc}); it cannot be rebuilt") from None
    journal = out / "requests.jsonl"
    records = list(read_journal(journal)) if journal.exists() else []
    config = run_info["config"]
    measured = [r for r in records if not r.warmup]
    complete = config.get("num_requests") and len({r.request_id for r in measured if r.turn == 0}) >= \
        config["num_requests"]
    report = build_report(config=config, records=measured, adapter=get_adapter(config["engine"]), server=[],
                          partial=not complete, target_concurrency=run_info["target_concurrency"],
                          target_rate=run_info.get("target_rate"),
                          slo=parse_slo(config["slo"]) if config.get("slo") else (), rebuilt_from_journal=True)
    write_json_atomic(out / "report.json", report.to_json())
    write_requests_csv(out / "requests.csv", records)
    render_run(report, out)
    print_summary(console, report)
    console.print(f"[dim]report rebuilt from {len(records)} journaled requests: {out / 'report.json'}[/]")
    return report


def _run_loop(coro):
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)
    return uvloop.run(coro)


def _print_workers(console: Console, workers: WorkersInfo) -> None:
    bounds = [c.error_bound_ns for c in workers.clocks if c.error_bound_ns is not None]
    if workers.ray:
        nodes = {c.node for c in workers.clocks}
        offsets = ", ".join(f"{c.offset_ns / 1e3:+.0f}" for c in workers.clocks)
        console.print(f"[dim]Ray ({workers.ray}): {workers.count} workers on {len(nodes)} node(s); clock "
                      f"offsets {offsets} µs, each within ±{max(bounds, default=0) / 1e3:.0f} µs[/]")
    for lost in workers.lost:
        console.print(f"[bold yellow]worker {lost.worker} ({lost.where}) was lost {lost.at_s:.1f} s into "
                      f"the run: its {lost.in_flight_failed} request(s) in flight failed (worker_lost)"
                      + ("; the run went on without it" if workers.on_loss == "continue" else "") + "[/]")


class _Run:
    def __init__(self, config: RunConfig, url: str, workload: Workload, out: Path, console: Console) -> None:
        self.config, self.url, self.workload, self.out, self.console = config, url, workload, out, console
        self.records: list[RequestRecord] = []
        self.interrupted = False
        self.client: HttpClient | None = None
        self._done, self._started, self._progress = 0, 0.0, None
        self._finished = self._failed = 0  # measured requests, for --max-error-rate
        self.stop_reason: str | None = None
        self.metrics: LiveMetrics | None = None
        self.run_id = f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"

    async def execute(self) -> Report:
        config = self.config
        self.client = http_client(config, self.url)
        try:
            return await self._execute(self.client)
        finally:
            await self.client.close()

    async def _execute(self, client: HttpClient) -> Report:
        config = self.config
        model, engine, adapter = await self._until_serving(client)
        workload = self.workload
        launcher = None
        if config.ray:
            from .ray_workers import RayLauncher
            launcher = RayLauncher(config.ray, self.run_id)
            if config.url is None and launcher.cluster()["nodes"] > 1:
                raise UsageError("the built-in emulator listens on this machine's loopback, out of reach of the "
                                 "other Ray nodes: give --url of a server every node can reach")
        workers = config.workers or (launcher.default_workers(config.concurrency) if launcher else
                                     auto_workers(config.concurrency))
        public = config.public() | {"run_id": self.run_id, "engine": engine, "model": model,
                                    "emulator": None if config.url else emulator_args(config), "workers": workers,
                                    "workload_info": workload.info, "loadgen_version": __version__,
                                    "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        target = None if config.request_rate else min(config.concurrency, config.num_requests or config.concurrency)
        # What `loadgen report DIR` needs to rebuild the report from the journal of a killed run.
        write_json_atomic(self.out / RUN_FILE, {"config": public, "target_concurrency": target,
                                                "target_rate": config.request_rate})
        # The run's order: round-robin over categories; a duration-bound run cycles one full pass.
        position = {id(p): i for i, p in enumerate(workload.prompts)}

        def order_of(count: int | None, seed: int) -> list[int]:
            return [position[id(p)] for p in round_robin(workload.prompts, count, seed)]

        warmup_order = order_of(config.warmup, config.seed + 1) if config.warmup else []
        if config.request_rate:
            # Open loop: every send time computed now; a duration-bound run has as many as fit.
            measured_offsets = self._arrivals(config.num_requests, config.duration_s, config.seed)
            warmup_offsets = self._arrivals(config.warmup, None, config.seed + 1) if config.warmup else []
            plans = split_arrivals(workers, warmup_order, order_of(len(measured_offsets), config.seed),
                                   warmup_offsets, measured_offsets)
        else:
            plans = split(workers, config.concurrency, warmup_order, order_of(config.num_requests, config.seed),
                          cycle=config.num_requests is None)
        loop = asyncio.get_running_loop()
        self.journal = Journal(self.out / "requests.jsonl", loop)
        if len(plans) == 1 and launcher is None:
            tokenizer = load_tokenizer(config.tokenizer) if workload.multi_turn else None
            share = LocalShare(client, (adapter, model, config, tokenizer), workload.prompts, plans[0], self._on_record)
        else:  # Ray workers get their prompts shipped (other nodes have no workload cache) and clocks measured
            share = WorkerPool(config, self.url, model, engine, plans, self._on_record,
                               start=launcher.start if launcher else None, measure_clocks=launcher is not None,
                               ship=workload.prompts if launcher else None, on_loss=config.on_worker_loss)
        self.share = share
        self.metrics = self._live_metrics(public, share)
        background: asyncio.Future | None = None
        lost: WorkerLost | None = None
        # a caller's own handlers (serve, matrix: SIGTERM stops the server) come back afterwards
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            await share.prepare()
            loop.add_signal_handler(signal.SIGINT, self._on_interrupt)
            loop.add_signal_handler(signal.SIGTERM, self._on_interrupt)
            gc.collect()
            gc.freeze()  # everything alive now is permanent; keeps collector pauses off the read path
            if config.warmup:
                await self._phase(share, warmup=True)
            collectors = adapter.collectors()
            for collector in collectors:
                await collector.begin(client.get)
            share.reset_read_lag()
            stop_polling = asyncio.Event()
            background = asyncio.ensure_future(_poll(collectors, client, time.monotonic(), self.metrics,
                                                     stop_polling))
            try:
                await self._phase(share, warmup=False)
            except WorkerLost as exc:
                lost, self.interrupted = exc, True  # report what finished, marked partial; then the error
            stop_polling.set()
            await background  # not cancelled: a poll in flight may hold iterations TRT-LLM has already drained
            server = [r for r in [await c.end(client.get) for c in collectors] if r is not None]
        finally:
            if background is not None:
                background.cancel()  # also when the run fails: no sampler outlives it
            await share.close()
            self.journal.close()
            if self.metrics is not None:
                self.metrics.close()
            gc.unfreeze()
            for sig, handler in previous.items():
                loop.remove_signal_handler(sig)
                if handler is not None:  # None: set outside Python, nothing to restore
                    signal.signal(sig, handler)
        report = build_report(config=public, records=[r for r in self.records if not r.warmup], adapter=adapter,
                              server=server, partial=self.interrupted, client_read_lag=share.read_lag().summary(),
                              target_concurrency=target, target_rate=config.request_rate,
                              slo=parse_slo(config.slo) if config.slo else (), stop_reason=self.stop_reason,
                              workers=WorkersInfo.from_json({"count": len(plans), "ray": config.ray,
                                                             "on_loss": config.on_worker_loss, "clocks": share.clocks,
                                                             "lost": share.lost})
                              if isinstance(share, WorkerPool) else None)
        write_json_atomic(self.out / "report.json", report.to_json())
        write_requests_csv(self.out / "requests.csv", self.records)
        if config.plots:
            render_run(report, self.out)
        print_summary(self.console, report)
        if isinstance(share, WorkerPool):
            _print_workers(self.console, report.workers)
        html_note = f" · {self.out / 'report.html'}" if config.plots else ""
        self.console.print(f"[dim]report: {self.out / 'report.json'}{html_note} · requests: "
                           f"{self.out / 'requests.jsonl'}[/]")
        if lost is not None:
            raise WorkerLost(f"{lost}; the partial report is written")
        if self.stop_reason is not None:
            raise ServerError(f"stopped early: {self.stop_reason}; the partial report is written")
        if config.pushgateway and self.metrics is not None:
            try:
                self.metrics.push(config.pushgateway)
            except OSError as exc:
                raise ServerError(f"cannot push to the Pushgateway at {config.pushgateway}: {exc}; "
                                  "the report is written") from None
            self.console.print(f"[dim]pushed the final metrics to {config.pushgateway} (job loadgen, "
                               f"run_id {report.config.run_id})[/]")
        return report

    def _live_metrics(self, public: dict, share: LocalShare | WorkerPool) -> LiveMetrics | None:
        config = self.config
        if config.metrics_addr is None and config.pushgateway is None:
            return None
        metrics = LiveMetrics(run_id=public["run_id"], engine=public["engine"], model=public["model"],
                              workload=config.workload,
                              target_concurrency=0 if config.request_rate else config.concurrency,
                              in_flight=lambda: share.in_flight, version=__version__)
        if config.metrics_addr is not None:
            url = metrics.serve(config.metrics_addr)
            self.console.print(f"[dim]live metrics: {url}[/]")
        return metrics

    async def _until_serving(self, client: HttpClient) -> tuple[str, str, EngineAdapter]:
        """Discovery and the preflight request, retried with backoff while the server answers but is
        not ready (429, 5xx, a failed stream: an engine still loading, or overloaded), for up to
        --startup-wait seconds. Anything else (unreachable, 404, a bad key) fails at once."""
        deadline = time.monotonic() + self.config.startup_wait_s
        delay = 0.5
        while True:
            try:
                model, engine = await self._discover(client)
                adapter = get_adapter(engine)
                await self._preflight(client, adapter, model)
                return model, engine, adapter
            except ServerNotReady as exc:
                if time.monotonic() + delay > deadline:
                    raise ServerError(f"{exc}; the server was not ready within {self.config.startup_wait_s:g} s "
                                      "(--startup-wait)") from None
                self.console.print(f"[yellow]server not ready ({exc}); retrying in {delay:.1f} s[/]")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _discover(self, client: HttpClient) -> tuple[str, str]:
        try:
            status, body = await client.get("/v1/models")
        except TransportError as exc:
            raise ServerError(f"{exc}; check --url and that the server is up") from exc
        if status in (401, 403):
            raise ServerError(f"GET /v1/models: HTTP {status}; check --api-key (or LOADGEN_API_KEY)")
        if status == 429 or status >= 500:
            raise ServerNotReady(f"GET /v1/models: HTTP {status}")
        try:
            models = orjson.loads(body) if status == 200 else None
            ids = [m["id"] for m in models["data"]]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise ServerError(f"{self.url} is not an OpenAI-compatible server: GET /v1/models gave HTTP {status} "
                              "without a model list; check --url (the server root, without /v1)") from None
        if not ids:
            raise ServerError(f"{self.url}/v1/models lists no models")
        model = self.config.model or ids[0]
        if self.config.model and self.config.model not in ids:
            raise UsageError(f"model {self.config.model!r} is not served at {self.url}; it serves: {', '.join(ids)}")
        engine = self.config.engine
        if engine == "auto":
            engine = detect_engine(models)
        elif engine not in ENGINES:
            raise UsageError(f"unknown --engine {engine!r}; choose auto or one of {', '.join(ENGINES)}")
        return model, engine

    async def _preflight(self, client: HttpClient, adapter: EngineAdapter, model: str) -> None:
        """One tiny request before the run, so a wrong endpoint is one clear error, not N failures."""
        first_id = int(self.workload.prompts[0].token_ids[0])
        body = orjson.dumps(adapter.request_body(model=model, prompt=[first_id], max_tokens=2,
                                                 temperature=self.config.temperature, ignore_eos=True))
        recorder = StreamRecorder(RequestRecord(-1, "preflight", 0, 1, 2, 0), adapter)
        try:
            await client.stream(COMPLETIONS, body, recorder.on_event, lambda t: None)
        except ExchangeError as exc:
            if exc.kind != "connect" and not (exc.status and 400 <= exc.status < 500 and exc.status != 429):
                raise ServerNotReady(f"the first request failed: {exc}") from None
            hint = {404: f"is --url the server root? POST {self.url}{COMPLETIONS} was not found",
                    401: "check --api-key (or LOADGEN_API_KEY)", 403: "check --api-key (or LOADGEN_API_KEY)"}
            raise ServerError(f"the first request failed: {exc}" + (f"; {hint[exc.status]}" if exc.status in hint else
                                                                    "")) from exc
        record = recorder.finish(None)
        if record.error is not None:
            raise ServerNotReady(f"the first request failed: {record.error.kind}: {record.error.message}")

    def _on_record(self, record: RequestRecord, conversation_done: bool) -> None:
        """Every finished request, from this process or a worker: journaled, kept, counted."""
        self.journal.append(record)
        self.records.append(record)
        if not record.warmup and record.outcome != "cancelled":
            self._finished += 1
            self._failed += record.error is not None
            limit = self.config.max_error_rate
            if (limit is not None and self.stop_reason is None and self._finished >= MIN_ERROR_SAMPLE
                    and self._failed / self._finished > limit):
                self.stop_reason = (f"{self._failed} of {self._finished} requests failed "
                                    f"({self._failed / self._finished:.1%}), above --max-error-rate {limit:g}")
                self._on_interrupt()
        if self.metrics is not None:
            self.metrics.observe(record)
        if conversation_done:
            self._done += 1
            if self._progress is not None:
                config = self.config
                limit = config.warmup if record.warmup else config.num_requests
                self._progress.update(self._done if limit else min(time.monotonic() - self._started,
                                                                   config.duration_s),
                                      f"in flight {self.share.in_flight}")

    def _arrivals(self, count: int | None, duration_s: float | None, seed: int) -> list[int]:
        config = self.config
        offsets = arrival_offsets(config.request_rate, count=count, duration_s=None if count else duration_s,
                                  arrival=config.arrival, burstiness=config.burstiness, ramp_up_s=config.ramp_up_s,
                                  seed=seed)
        if count and duration_s is not None:  # both given: whichever comes first
            offsets = offsets[offsets < int(duration_s * 1e9)]
        return offsets.tolist()

    async def _phase(self, share: LocalShare | WorkerPool, *, warmup: bool) -> None:
        """Closed loop over the phase's prompts; its limit counts conversations (one request each
        unless multi-turn)."""
        config = self.config
        limit = config.warmup if warmup else config.num_requests
        deadline = None if warmup or config.duration_s is None else time.monotonic_ns() + int(config.duration_s * 1e9)
        self._done, self._started = 0, time.monotonic()
        total = limit if limit else config.duration_s
        label = "warm-up" if warmup else ("requests" if limit else "seconds")
        with (RunProgress(self.console, total, label) if config.progress else contextlib.nullcontext()) as progress:
            self._progress = progress
            try:
                # open loop: workers need a moment to receive the start time before it comes
                start = time.monotonic_ns() + (START_MARGIN_NS if isinstance(share, WorkerPool) else 0)
                await share.phase(warmup, deadline, start)
            finally:
                self._progress = None

    def _on_interrupt(self) -> None:
        loop = asyncio.get_running_loop()
        if not self.interrupted:
            self.interrupted = True
            why = f"stopping: {self.stop_reason}" if self.stop_reason else "interrupted"
            self.console.print(f"[yellow]{why}: no new requests; waiting up to {INTERRUPT_GRACE_S:.0f} s "
                               "for those in flight (Ctrl-C again to stop now)[/]")
            self.share.stop()
            self._grace = loop.call_later(INTERRUPT_GRACE_S, self.share.cancel)
        else:
            self.share.cancel()


async def _poll(collectors, client: HttpClient, started: float, metrics: LiveMetrics | None,
                done: asyncio.Event) -> None:
    """Sample each collector at its own interval (default SERVER_POLL_S) for the report's time
    series and the live server-AL gauge, until `done` is set; TRT-LLM's draining iteration stats
    need reading more often, before its queue overflows."""
    due = [started + getattr(c, "poll_interval_s", SERVER_POLL_S) for c in collectors]
    while True:
        try:
            await asyncio.wait_for(done.wait(), max(0.0, min(due) - time.monotonic()))
            return
        except TimeoutError:
            pass
        now = time.monotonic()
        for i, collector in enumerate(collectors):
            if now >= due[i]:
                await collector.poll(client.get, now - started)
                if metrics is not None and collector.series and collector.series[-1]["acceptance_length"]:
                    metrics.set_server_acceptance_length(collector.series[-1]["acceptance_length"])
                due[i] = now + getattr(collector, "poll_interval_s", SERVER_POLL_S)
