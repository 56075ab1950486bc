"""One run, from its folder to its report: the server found ready, the load placed and planned,
warm-up and measured phases with interrupts and the server's metrics, then the report written
and, after a partial run, the error that says so. The stages it wires are elsewhere (handshake,
shares, polling, outputs); this module owns their order."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import secrets
import time
from datetime import datetime

from rich.console import Console

from ..analysis import (
    Report,
    WorkersInfo,
    build_report,
    overlap_figures,
    prefix_cache_figures,
    sampling_figures,
    token_counts_of,
)
from ..config import RunConfig, own_server_proxy, parse_slo
from ..emulator.launch import EmulatorProcess
from ..emulator.profile import load_accept_profile
from ..engines import EngineAdapter, output_ids_request_fields
from ..engines.prefix_cache import ServerPrefixCache
from ..errors import ServerError, UsageError, WorkerLost
from ..layout import RunFolder
from ..records import Journal
from ..sinks import RunProgress, print_trace, print_workers
from ..transport import HttpClient
from ..wiring import http_client, workload_spec
from ..workloads import Workload, load_workload
from .handshake import until_serving
from .outputs import claim_run_folder, write_report, write_run_info
from .polling import ServerPolling
from .shares import LoadShare, Placement, make_share, plan_shares
from .signals import InterruptSignals
from .tally import RecordTally
from .telemetry import push_metrics, start_live_metrics

__all__ = ["run", "emulator_args"]

#: in-flight requests get this long to finish after Ctrl-C before they are cancelled
INTERRUPT_GRACE_S = 5.0


def emulator_args(config: RunConfig, concurrency: int | None = None) -> list[str]:
    """`loadgen emulate` flags for the built-in emulator: one process up to 256 streams, else two."""
    emu = config.emulator
    workers = emu.workers or (1 if (concurrency or config.concurrency) <= 256 else 2)
    timing = ["--cost", emu.cost] if emu.cost else ["--step-ms", str(emu.step_ms)]
    return ["--ttft-ms", str(emu.ttft_ms), *timing, "--accept", ",".join(map(str, emu.accept)),
            "--seed", str(config.seed), "--workers", str(workers), *(["--prefix-cache"] if emu.prefix_cache else []),
            *(["--reasoning-tokens", str(emu.reasoning_tokens)] if emu.reasoning_tokens else []),
            *(["--accept-profile", emu.accept_profile] if emu.accept_profile else [])]


def _check_accept_profile(config: RunConfig) -> None:
    """--emulator-accept-profile read as the emulator will read it, so a mistake is one usage line here
    rather than an emulator that does not start."""
    assert config.emulator.accept_profile is not None, "called only with a profile"
    try:
        load_accept_profile(config.emulator.accept_profile, fallback=config.emulator.accept)
    except ValueError as exc:
        raise UsageError(f"--emulator-accept-profile: {exc}") from None


def run(config: RunConfig, console: Console) -> Report:
    """Run one benchmark and return its report; writes requests.jsonl and report.json."""
    if config.url is None and config.emulator.accept_profile:
        _check_accept_profile(config)
    folder = claim_run_folder(config.output_dir, replace=config.replace)
    workload = load_workload(workload_spec(config))
    if workload.schedule is not None:
        if config.num_requests is None and config.duration_s is None:  # the whole trace
            config = dataclasses.replace(config, num_requests=workload.schedule.measured)
        print_trace(console, workload.info)
    elif config.num_requests is None and config.measured_s is None:  # a dataset, unbounded: one pass
        config = dataclasses.replace(config, num_requests=len(workload.prompts))
    with contextlib.ExitStack() as stack:
        url = config.url
        if url is None:
            emulator = stack.enter_context(EmulatorProcess(emulator_args(config)))
            url = emulator.url
            console.print(f"[dim]no --url: running against the built-in emulator at {url}[/]")
            config = dataclasses.replace(config, proxy=own_server_proxy(config.proxy))
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
        self.interrupted = False
        self.share: LoadShare | None = None
        self.run_id = f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
        self.server_prefix_cache: ServerPrefixCache | None = None

    async def execute(self) -> Report:
        client = http_client(self.config, self.url)
        try:
            return await self._execute(client)
        finally:
            await client.close()

    async def _execute(self, client: HttpClient) -> Report:
        config = self.config
        served = await until_serving(client, config, self.url, self.workload.prompts[0], self.console)
        if self.workload.schedule is not None:
            self.workload.schedule.check_context(served.context_length)
        if config.cache_isolation and served.adapter.cache_isolation_field is None:
            raise UsageError(f"--cache-isolation: {served.engine} has no per-request prefix-cache isolation that "
                             "loadgen knows of; use --unique-prefix (a prefix of its own for every prompt)")
        if (config.output_ids and served.adapter.output_ids_drop_text
                and any(p.followups for p in self.workload.prompts)):
            raise UsageError(f"--output-ids: {served.engine} sends no text where it sends ids, and this workload's "
                             "later turns carry each reply's text; run multi-turn workloads without --output-ids")
        placement = Placement.choose(config, self.run_id)
        if client.proxy is not None:
            self.console.print(f"[dim]through proxy {client.proxy.shown} (from {client.proxy.source}): its delay is "
                               "part of every figure[/]")
        public = config.public() | {"run_id": self.run_id, "engine": served.engine, "model": served.model,
                                    "proxy": client.proxy.shown if client.proxy else None,
                                    "emulator": None if config.url else emulator_args(config),
                                    "workers": placement.workers, "workload_info": self.workload.info}
        public, target = write_run_info(self.folder, config, public, self._target_rate)
        plans = plan_shares(config, self.workload, placement.workers)
        loop = asyncio.get_running_loop()
        journal = Journal(self.folder.journal, loop)
        signals = InterruptSignals(loop)
        metrics = start_live_metrics(config, public, self._in_flight, self.console,
                                     token_counts_of(served.adapter, config.endpoint))
        self.tally = RecordTally(config, journal, metrics, self._in_flight, on_stop=self._on_interrupt)
        self.share = share = make_share(config, self.url, served, self.workload, plans, placement, client,
                                        self.tally)
        polling = ServerPolling(served.adapter, client, metrics)
        lost: WorkerLost | None = None
        try:
            await share.prepare()
            signals.interrupt_with(self._on_interrupt)
            gc.collect()
            gc.freeze()  # everything alive now is permanent; keeps collector pauses off the read path
            if config.warmup:
                await self._phase(share, warmup=True)
            await polling.begin()
            share.reset_read_lag()
            polling.start()
            try:
                await self._phase(share, warmup=False)
            except WorkerLost as exc:
                lost, self.interrupted = exc, True  # report what finished, marked partial; then the error
            server = await polling.finish()
            self.server_prefix_cache = polling.prefix_cache
        finally:
            polling.cancel()  # also when the run fails: no sampler outlives it
            await share.close()
            journal.close()
            if metrics is not None:
                metrics.close()
            gc.unfreeze()
            signals.restore()
        report = self._report(share, public, served.adapter, server, target)
        if lost is not None:
            raise WorkerLost(f"{lost}; the partial report is written")
        if self.tally.stop_reason is not None:
            raise ServerError(f"stopped early: {self.tally.stop_reason}; the partial report is written")
        if config.pushgateway and metrics is not None:
            push_metrics(metrics, config.pushgateway, report.config.run_id, self.console)
        return report

    @property
    def _target_rate(self) -> float | None:
        """The open loop's rate: --request-rate, or the trace's mean over the measured rows."""
        schedule = self.workload.schedule
        return self.config.request_rate or (schedule.rate if schedule is not None else None)

    def _in_flight(self) -> int:
        return 0 if self.share is None else self.share.in_flight

    def _report(self, share: LoadShare, public: dict, adapter: EngineAdapter, server: list,
                target: int | None) -> Report:
        """The run's report: built from the measured records, written, drawn and printed."""
        config, records = self.config, self.tally.records
        workers = share.workers_summary()
        field = adapter.cache_isolation_field if config.cache_isolation else None
        isolation = (f"{field[0]} per conversation" if field[1] else f"{field[0]}: false") if field else None
        if config.unique_prefix:
            isolation = f"{isolation} + unique prefix" if isolation else "unique prefix"
        prompt_ids = {p.prompt_id: p.token_ids for p in self.workload.prompts}
        prefix_cache = prefix_cache_figures(
            records, prompt_ids, self.server_prefix_cache,
            block_size=self.server_prefix_cache.block_size if self.server_prefix_cache else None,
            isolation=isolation, cache_off=field is not None and not field[1],
            zero_omitted=adapter.cached_tokens_zero_omitted)
        measured = [r for r in records if not r.warmup]
        overlap = overlap_figures(
            measured, prompt_ids, asked=config.output_ids,
            engine_way=output_ids_request_fields(adapter, config.endpoint),
            engine_note=adapter.output_ids_note)
        report = build_report(config=public, records=measured, adapter=adapter,
                              server=server, partial=self.interrupted, client_read_lag=share.read_lag().summary(),
                              target_concurrency=target, target_rate=self._target_rate,
                              slo=parse_slo(config.slo) if config.slo else (), stop_reason=self.tally.stop_reason,
                              workers=None if workers is None else WorkersInfo.from_json(workers),
                              prefix_cache=prefix_cache, overlap=overlap,
                              sampling=sampling_figures(records, len(self.workload.prompts)))
        write_report(self.folder, report, records, self.console, plots=config.plots)
        if report.workers is not None:
            print_workers(self.console, report.workers)
        html_note = f" · {self.folder.html}" if config.plots else ""
        self.console.print(f"[dim]report: {self.folder.report}{html_note} · requests: {self.folder.journal}[/]")
        return report

    async def _phase(self, share: LoadShare, *, warmup: bool) -> None:
        """One phase over its share of prompts; its limit counts conversations (one request each
        unless multi-turn)."""
        config = self.config
        limit = config.warmup if warmup else config.num_requests
        deadline = None if warmup or config.duration_s is None else time.monotonic_ns() + int(config.duration_s * 1e9)
        total = limit if limit else config.measured_s
        label = "warm-up" if warmup else ("requests" if limit else "seconds")
        with (RunProgress(self.console, total, label) if config.progress else contextlib.nullcontext()) as progress:
            self.tally.start_phase(progress)
            try:
                await share.phase(warmup, deadline, time.monotonic_ns())
            finally:
                self.tally.start_phase(None)

    def _on_interrupt(self) -> None:
        """Ctrl-C, SIGTERM or --max-error-rate: no new requests, those in flight get a grace period;
        a second time, they are cancelled at once."""
        share = self.share
        assert share is not None, "interrupts are taken only once the share exists"
        loop = asyncio.get_running_loop()
        if not self.interrupted:
            self.interrupted = True
            stop_reason = self.tally.stop_reason
            why = f"stopping: {stop_reason}" if stop_reason else "interrupted"
            self.console.print(f"[yellow]{why}: no new requests; waiting up to {INTERRUPT_GRACE_S:.0f} s "
                               "for those in flight (Ctrl-C again to stop now)[/]")
            share.stop()
            loop.call_later(INTERRUPT_GRACE_S, share.cancel)
        else:
            share.cancel()
