"""The run's load and who runs it: the prompts in the run's order, their send times (open loop),
split into one plan per share; the share itself in this process, in worker processes or in Ray
actors, every one of them driven through LoadShare."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..config import RunConfig
from ..errors import UsageError
from ..records import RequestRecord
from ..scheduler import arrival_offsets
from ..sender import needs_tokenizer
from ..transport import HttpClient, ReadLag
from ..workers import LocalShare, Plan, WorkerPool, auto_workers, split, split_arrivals, split_levels
from ..workloads import Workload, load_tokenizer, stratified_order
from .handshake import Served

if TYPE_CHECKING:
    from ..ray_workers import RayLauncher

__all__ = ["LoadShare", "Placement", "plan_shares", "make_share"]


class LoadShare(Protocol):
    """What the run needs of whoever sends its requests."""

    @property
    def in_flight(self) -> int: ...

    async def prepare(self) -> None:
        """Bodies serialized, connections (and worker processes) up, before the clock starts."""

    async def phase(self, warmup: bool, deadline_ns: int | None, start_ns: int | None = None) -> None:
        """Run one phase to its end: its prompts sent, or its deadline passed, or stopped."""

    def stop(self) -> None:
        """No new requests; those in flight finish."""

    def cancel(self) -> None:
        """Cancel those in flight too."""

    def read_lag(self) -> ReadLag: ...

    def reset_read_lag(self) -> None: ...

    async def close(self) -> None: ...

    def workers_summary(self) -> dict | None:
        """The report's workers section; None where the load ran in this process."""


@dataclass(frozen=True)
class Placement:
    """Where the load runs: in how many workers, and on which Ray cluster (None: this machine)."""

    workers: int
    launcher: RayLauncher | None

    @classmethod
    def choose(cls, config: RunConfig, run_id: str) -> Placement:
        launcher = None
        if config.ray:
            from ..ray_workers import RayLauncher
            launcher = RayLauncher(config.ray, run_id)
            if config.url is None and launcher.cluster()["nodes"] > 1:
                raise UsageError("the built-in emulator listens on this machine's loopback, out of reach of the "
                                 "other Ray nodes: give --url of a server every node can reach")
        workers = config.workers or (launcher.default_workers(config.concurrency) if launcher else
                                     auto_workers(config.concurrency))
        return cls(workers, launcher)


def plan_shares(config: RunConfig, workload: Workload, workers: int) -> list[Plan]:
    """The run's order, every prompt once per pass, stratified by category (workloads/sampling.py; a
    duration-bound or stepped run cycles one full pass), split among the workers (a block of the
    order each; cycling, every worker its own stride of the pass); open loop: with every send time
    computed now (a duration-bound run has as many as fit); a trace: its rows at its own send times."""
    position = {id(p): i for i, p in enumerate(workload.prompts)}

    def order_of(count: int | None, seed: int) -> list[int]:
        return [position[id(p)] for p in stratified_order(workload.prompts, count, seed)]

    schedule = workload.schedule
    if schedule is not None:  # --trace: the prompts are the replayed rows, in order
        rows = list(range(len(schedule.rows)))
        return split_arrivals(workers, rows[:schedule.warmup], rows[schedule.warmup:], schedule.warmup_offsets_ns,
                              schedule.measured_offsets_ns)
    warmup_order = order_of(config.warmup, config.seed + 1) if config.warmup else []
    if config.levels:  # cycled as a duration-bound run's
        return split_levels(workers, config.levels, warmup_order, order_of(None, config.seed))
    rate = config.request_rate
    if rate:
        measured_offsets = _arrivals(config, rate, config.num_requests, config.duration_s, config.seed)
        warmup_offsets = _arrivals(config, rate, config.warmup, None, config.seed + 1) if config.warmup else []
        return split_arrivals(workers, warmup_order, order_of(len(measured_offsets), config.seed), warmup_offsets,
                              measured_offsets)
    return split(workers, config.concurrency, warmup_order, order_of(config.num_requests, config.seed),
                 cycle=config.num_requests is None)


def _arrivals(config: RunConfig, rate: float, count: int | None, duration_s: float | None, seed: int) -> list[int]:
    offsets = arrival_offsets(rate, count=count, duration_s=None if count else duration_s,
                              arrival=config.arrival, burstiness=config.burstiness, ramp_up_s=config.ramp_up_s,
                              seed=seed)
    if count and duration_s is not None:  # both given: whichever comes first
        offsets = offsets[offsets < int(duration_s * 1e9)]
    return offsets.tolist()


def make_share(config: RunConfig, url: str, served: Served, workload: Workload, plans: list[Plan],
               placement: Placement, client: HttpClient,
               on_record: Callable[[RequestRecord, bool], None]) -> LoadShare:
    """One plan on this machine runs in this process; else worker processes run the plans. Ray
    workers get their prompts shipped (other nodes have no workload cache) and their clocks measured;
    so do a trace's workers (its prompts are built per run, not cached)."""
    launcher = placement.launcher
    if len(plans) == 1 and launcher is None:
        tokenizer = load_tokenizer(config.tokenizer) if needs_tokenizer(config, served.adapter,
                                                                        workload.multi_turn) else None
        return LocalShare(client, (served.adapter, served.model, config, tokenizer), workload.prompts, plans[0],
                          on_record)
    return WorkerPool(config, url, served.model, served.engine, plans, on_record,
                      start=launcher.start if launcher else None, measure_clocks=launcher is not None,
                      ship=workload.prompts if launcher or workload.schedule else None,
                      on_loss=config.on_worker_loss)
