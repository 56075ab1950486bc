"""One run, from its folder to its report: the server found ready, the load placed and planned,
warm-up and measured phases with interrupts and the server's metrics, then the report written
and, after a partial run, the error that says so. The stages it wires are elsewhere (handshake,
shares, polling, outputs); this module owns their order."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import secrets
import signal
import time
from datetime import datetime, timezone

from rich.console import Console

from .. import __version__
from ..analysis import Report, WorkersInfo, build_report
from ..analysis.slo import parse_slo
from ..config import RunConfig
from ..emulator.launch import EmulatorProcess
from ..engines import EngineAdapter
from ..errors import ServerError, WorkerLost
from ..layout import RunFolder
from ..records import Journal, RequestRecord
from ..sinks import LiveMetrics, RunProgress, write_json_atomic
from ..transport import HttpClient
from ..wiring import http_client, workload_spec
from ..workloads import Workload, load_workload
from .handshake import until_serving
from .outputs import claim_run_folder, write_report
from .polling import ServerPolling
from .shares import LoadShare, Placement, make_share, plan_shares

__all__ = ["run", "emulator_args"]

#: in-flight requests get this long to finish after Ctrl-C before they are cancelled
INTERRUPT_GRACE_S = 5.0
#: --max-error-rate is judged only after this many measured requests finished
MIN_ERROR_SAMPLE = 20


def emulator_args(config: RunConfig, concurrency: int | None = None) -> list[str]:
    """`loadgen emulate` flags for the built-in emulator: one process up to 256 streams, else two."""
    emu = config.emulator
    workers = emu.workers or (1 if (concurrency or config.concurrency) <= 256 else 2)
    return ["--ttft-ms", str(emu.ttft_ms), "--step-ms", str(emu.step_ms),
            "--accept", ",".join(map(str, emu.accept)), "--seed", str(config.seed), "--workers", str(workers)]


def run(config: RunConfig, console: Console) -> Report:
    """Run one benchmark and return its report; writes requests.jsonl and report.json."""
    folder = claim_run_folder(config.output_dir, replace=config.replace)
    workload = load_workload(workload_spec(config))
    with contextlib.ExitStack() as stack:
        url = config.url
        if url is None:
            emulator = stack.enter_context(EmulatorProcess(emulator_args(config)))
            url = emulator.url
            console.print(f"[dim]no --url: running against the built-in emulator at {url}[/]")
        return _run_loop(_Run(config, url, workload, folder, console).execute())


def _run_loop(coro):
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)
    return uvloop.run(coro)


class _Run:
    def __init__(self, config: RunConfig, url: str, workload: Workload, folder: RunFolder, console: Console) -> None:
        self.config, self.url, self.workload, self.folder, self.console = config, url, workload, folder, console
        self.records: list[RequestRecord] = []
        self.interrupted = False
        self._done, self._started, self._progress = 0, 0.0, None
        self._finished = self._failed = 0  # measured requests, for --max-error-rate
        self.stop_reason: str | None = None
        self.metrics: LiveMetrics | None = None
        self.share: LoadShare | None = None
        self.run_id = f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"

    async def execute(self) -> Report:
        client = http_client(self.config, self.url)
        try:
            return await self._execute(client)
        finally:
            await client.close()

    async def _execute(self, client: HttpClient) -> Report:
        config = self.config
        served = await until_serving(client, config, self.url, self.workload.prompts[0], self.console)
        placement = Placement.choose(config, self.run_id)
        public = config.public() | {"run_id": self.run_id, "engine": served.engine, "model": served.model,
                                    "emulator": None if config.url else emulator_args(config),
                                    "workers": placement.workers, "workload_info": self.workload.info,
                                    "loadgen_version": __version__,
                                    "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        target = None if config.request_rate else min(config.concurrency, config.num_requests or config.concurrency)
        # What `loadgen report DIR` needs to rebuild the report from the journal of a killed run.
        write_json_atomic(self.folder.run_info, {"config": public, "target_concurrency": target,
                                                 "target_rate": config.request_rate})
        plans = plan_shares(config, self.workload, placement.workers)
        loop = asyncio.get_running_loop()
        self.journal = Journal(self.folder.journal, loop)
        self.share = share = make_share(config, self.url, served, self.workload, plans, placement, client,
                                        self._on_record)
        self.metrics = self._live_metrics(public)
        polling = ServerPolling(served.adapter, client, self.metrics)
        lost: WorkerLost | None = None
        # a caller's own handlers (serve, matrix: SIGTERM stops the server) come back afterwards
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            await share.prepare()
            for sig in previous:
                loop.add_signal_handler(sig, self._on_interrupt)
            gc.collect()
            gc.freeze()  # everything alive now is permanent; keeps collector pauses off the read path
            if config.warmup:
                await self._phase(warmup=True)
            await polling.begin()
            share.reset_read_lag()
            polling.start()
            try:
                await self._phase(warmup=False)
            except WorkerLost as exc:
                lost, self.interrupted = exc, True  # report what finished, marked partial; then the error
            server = await polling.finish()
        finally:
            polling.cancel()  # also when the run fails: no sampler outlives it
            await share.close()
            self.journal.close()
            if self.metrics is not None:
                self.metrics.close()
            gc.unfreeze()
            for sig, handler in previous.items():
                loop.remove_signal_handler(sig)
                if handler is not None:  # None: set outside Python, nothing to restore
                    signal.signal(sig, handler)
        report = self._report(public, served.adapter, server, target)
        if lost is not None:
            raise WorkerLost(f"{lost}; the partial report is written")
        if self.stop_reason is not None:
            raise ServerError(f"stopped early: {self.stop_reason}; the partial report is written")
        if config.pushgateway and self.metrics is not None:
            self._push(report.config.run_id)
        return report

    def _report(self, public: dict, adapter: EngineAdapter, server: list, target: int | None) -> Report:
        """The run's report: built from the measured records, written, drawn and printed."""
        config = self.config
        workers = self.share.workers_summary()
        report = build_report(config=public, records=[r for r in self.records if not r.warmup], adapter=adapter,
                              server=server, partial=self.interrupted, client_read_lag=self.share.read_lag().summary(),
                              target_concurrency=target, target_rate=config.request_rate,
                              slo=parse_slo(config.slo) if config.slo else (), stop_reason=self.stop_reason,
                              workers=None if workers is None else WorkersInfo.from_json(workers))
        write_report(self.folder, report, self.records, self.console, plots=config.plots)
        if report.workers is not None:
            _print_workers(self.console, report.workers)
        html_note = f" · {self.folder.html}" if config.plots else ""
        self.console.print(f"[dim]report: {self.folder.report}{html_note} · requests: {self.folder.journal}[/]")
        return report

    def _push(self, run_id: str) -> None:
        pushgateway = self.config.pushgateway
        try:
            self.metrics.push(pushgateway)
        except OSError as exc:
            raise ServerError(f"cannot push to the Pushgateway at {pushgateway}: {exc}; "
                              "the report is written") from None
        self.console.print(f"[dim]pushed the final metrics to {pushgateway} (job loadgen, run_id {run_id})[/]")

    def _live_metrics(self, public: dict) -> LiveMetrics | None:
        config, share = self.config, self.share
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

    async def _phase(self, *, warmup: bool) -> None:
        """One phase over its share of prompts; its limit counts conversations (one request each
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
                await self.share.phase(warmup, deadline, time.monotonic_ns())
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
