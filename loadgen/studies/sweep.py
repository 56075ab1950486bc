"""A sweep: one run per concurrency (or request rate) against one server, the table of points,
their Pareto front (output TPS against user TPS), and, with SLOs, the highest load that meets them.

A temperature sweep holds the load (one concurrency or request rate) and runs once per sampling
temperature instead: acceptance falls as sampling flattens the target's distribution (the seeds
report 0.81 at T 0 falling to 0.38 at 1.5), and the table and picture show what that costs.

Each point is a complete run in its own folder (`c16/`, `r2.5/`, `t0.5/`); a point whose folder
holds a finished (not partial) report is taken as it is, so an interrupted sweep resumes where it
stopped.
With --repeats N each point's folder holds its repeats (`c16/repeat-1/`, ...; studies/repeats.py)
and the point's figures are their means, the headline ones with their standard deviation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from rich.console import Console

from ..analysis import Report
from ..config import RunConfig
from ..emulator.launch import EmulatorProcess
from ..errors import UsageError
from ..layout import RunFolder, SweepFolder
from ..run import emulator_args, prepare_output_dir, run
from ..sinks import cell, print_table, write_csv, write_json_atomic
from ..sinks.plots import render_sweep
from .repeats import HEADLINE, REPEATS_SUMMARY, run_repeats

__all__ = ["KINDS", "point_done", "finished_report", "pareto_front", "point_row", "run_sweep",
           "temperature_values"]

#: what a sweep runs along: a load (concurrency, request rate), or the temperature at one load
KINDS = ("concurrency", "request_rate", "temperature")

COLUMNS = ("value", "output_tps", "user_tps_p50", "ttft_p50_s", "ttft_p99_s", "tpot_p50_s", "tpot_p99_s",
           "acceptance_length", "server_acceptance_length", "requests", "failed", "slo_met", "goodput_rps",
           "goodput_tps", "position1_acceptance", "repeats", *(f"{name}_std" for name in HEADLINE))


def temperature_values(values: Sequence[float], source: str) -> tuple[float, ...]:
    """A temperature sweep's temperatures, sorted; a UsageError naming SOURCE (the flag or plan key)
    where there is none, one is negative or not finite, or one is given twice (a typo, not a repeat)."""
    if not values:
        raise UsageError(f"{source} takes comma-separated temperatures >= 0, e.g. 0,0.5,1,1.5; got none")
    bad = [v for v in values if not math.isfinite(v) or v < 0]
    if bad:
        raise UsageError(f"{source} takes temperatures >= 0, got {bad[0]:g}")
    twice = sorted({v for v in values if list(values).count(v) > 1})
    if twice:
        raise UsageError(f"{source} names temperature {twice[0]:g} twice: give each once")
    return tuple(sorted(values))


def point_row(value: float, report: Report) -> dict:
    """One sweep point's figures, from its report."""
    lat, summary, spec, slo = report.latency, report.summary, report.speculative, report.slo
    return {
        "value": value, "output_tps": summary.output_tps, "user_tps_p50": lat.user_tps.p50,
        "ttft_p50_s": lat.ttft_s.p50, "ttft_p99_s": lat.ttft_s.p99,
        "tpot_p50_s": lat.tpot_s.p50, "tpot_p99_s": lat.tpot_s.p99,
        "acceptance_length": spec.client.acceptance_length,
        "server_acceptance_length": spec.server.acceptance_length if spec.server else None,
        "requests": summary.requests_sent, "failed": summary.requests_failed,
        "slo_met": slo.all_met if slo else None,
        "goodput_rps": slo.goodput_rps if slo else None, "goodput_tps": slo.goodput_tps if slo else None,
        # P(a step yields >= 2 tokens | >= 1): draft position 1 accepted, the "acceptance rate" the seeds
        # plot against temperature (None without speculation)
        "position1_acceptance": spec.client.conditional_acceptance.get("2"),
    }


def repeated_row(value: float, reports: Sequence[Report]) -> dict:
    """A point run several times: each figure's mean over the repeats (None where a repeat lacks
    it), the headline figures' sample standard deviation beside them, and the repeats' count."""
    rows = [point_row(value, r) for r in reports]
    out: dict[str, Any] = {}
    for key in rows[0]:
        values = [row[key] for row in rows]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        out[key] = float(np.mean(values)) if numeric and key != "value" else rows[-1][key]
    for name in HEADLINE:
        values = [row[name] for row in rows]
        out[f"{name}_std"] = None if None in values else float(np.std(values, ddof=1))
    out["repeats"] = len(reports)
    return out


def pareto_front(rows: list[dict]) -> list[float]:
    """The points no other point beats on both output TPS and user TPS (p50): the curve a
    deployment chooses its operating point from."""
    def beats(a: dict, b: dict) -> bool:
        return (a["output_tps"] >= b["output_tps"] and a["user_tps_p50"] >= b["user_tps_p50"]
                and (a["output_tps"] > b["output_tps"] or a["user_tps_p50"] > b["user_tps_p50"]))

    scored = [r for r in rows if r["output_tps"] is not None and r["user_tps_p50"] is not None]
    return [r["value"] for r in scored if not any(beats(o, r) for o in scored)]


def run_sweep(base: RunConfig, kind: str, values: Sequence[float], out: Path, console: Console, *,
              find_max: bool = False) -> dict:
    """kind: one of KINDS (temperature: at base's concurrency or request rate). Returns the sweep's
    summary (also sweep.json)."""
    if find_max and kind == "temperature":
        raise UsageError("--find-max searches the highest load meeting the SLOs; a temperature sweep holds one "
                         "load: sweep --concurrency (or --request-rate) for it")
    if find_max and not base.slo:
        raise UsageError("--find-max searches the highest load that meets the SLOs: give --slo too")
    prepare_output_dir(out)
    files = SweepFolder(out)
    rows: dict[float, dict] = {}
    interrupted = False
    with contextlib.ExitStack() as stack:
        url, emulator = base.url, None
        if url is None:  # one built-in emulator for every point, as one server would be
            emulator = emulator_args(base, int(max(values)) if kind == "concurrency" else base.concurrency)
            url = stack.enter_context(EmulatorProcess(emulator)).url
            console.print(f"[dim]no --url: sweeping the built-in emulator at {url}[/]")

        def measure(value: float) -> dict | None:
            nonlocal interrupted
            folder = files.point(kind, value)
            load: dict[str, Any] = {kind: value}  # concurrency, request_rate or temperature
            if base.repeats > 1:
                console.rule(f"[bold]{kind.replace('_', ' ')} {value:g}")
                reports = run_repeats(dataclasses.replace(base, url=url, output_dir=folder.path, **load), console,
                                      run, finished_report)
                if reports is None:
                    interrupted = True
                    return None
                rows[value] = repeated_row(value, reports)
                return rows[value]
            report = finished_report(folder)
            if report is None:  # a partial point runs again, its files replaced
                config = dataclasses.replace(base, url=url, output_dir=folder.path, replace=True, **load)
                console.rule(f"[bold]{kind.replace('_', ' ')} {value:g}")
                report = run(config, console)
                if report.partial:
                    interrupted = True
                    return None
            else:
                console.print(f"[dim]{kind.replace('_', ' ')} {value:g}: done before, kept ({folder.path})[/]")
            rows[value] = point_row(value, report)
            return rows[value]

        for value in values:
            if measure(value) is None:
                break
        best = None
        if find_max and not interrupted:
            best = _search_max(values, rows, measure, integer=kind == "concurrency")
    ordered = [rows[v] for v in sorted(rows)]
    # the Pareto front is a choice among loads; temperatures are no operating points to choose among
    pareto = pareto_front(ordered) if kind != "temperature" else []
    summary = {"kind": kind, "values": values, "emulator": emulator, "points": ordered, "pareto": pareto,
               "find_max": find_max, "max_meeting_slo": best, "slo": base.slo, "interrupted": interrupted,
               "held_load": held_load(base) if kind == "temperature" else None}
    write_json_atomic(files.summary, summary)
    write_csv(files.points_csv, COLUMNS, ordered)
    if base.plots:
        console.print(f"[dim]sweep: {files.summary} · {render_sweep(summary, out)}[/]")
    _print(console, summary)
    return summary


def held_load(config: RunConfig) -> str:
    """The one load a temperature sweep runs every point at, in words: "request rate 2.5", "concurrency 8"."""
    return f"request rate {config.request_rate:g}" if config.request_rate else f"concurrency {config.concurrency}"


def finished_report(folder: RunFolder) -> Report | None:
    """The run's report when it finished (not partial), else None: the point still has to run (a
    report this loadgen cannot read runs again too)."""
    try:
        report = Report.from_json(orjson.loads(folder.report.read_bytes()))
    except (FileNotFoundError, ValueError):  # orjson.JSONDecodeError is a ValueError
        return None
    return None if report.partial else report


def point_done(folder: RunFolder) -> bool:
    """Whether a sweep's point is finished: its report, or with --repeats its repeats' summary
    (written once every repeat finished)."""
    return (folder.path / REPEATS_SUMMARY).exists() or finished_report(folder) is not None


def _search_max(values: Sequence[float], rows: dict, measure, *, integer: bool) -> float | None:
    """The highest load meeting every SLO: the sweep's points bracket it (the last that met, the
    first that missed), then bisection narrows the bracket to adjacent integers (concurrency) or
    to within 5 % (rate). None when even the lowest point misses."""
    met = [v for v in values if rows[v]["slo_met"]]
    missed = [v for v in values if not rows[v]["slo_met"] and (not met or v > max(met))]
    if not met:
        return None
    low, high = max(met), min(missed) if missed else None
    while high is not None and (high - low > 1 if integer else high / low > 1.05):
        middle = (low + high) // 2 if integer else (low + high) / 2
        row = measure(middle)
        if row is None:
            break
        low, high = (middle, high) if row["slo_met"] else (low, middle)
    return low


def _spread(row: dict, name: str, shown: Callable[[float | None], str]) -> str:
    """A figure as the sweep table shows it: "mean ± std" for a point run several times."""
    std = row.get(f"{name}_std")
    return shown(row[name]) + ("" if std is None else f" ± {shown(std)}")


def _print(console: Console, summary: dict) -> None:
    ms = lambda v: cell(None if v is None else v * 1e3, "{:.1f}")  # noqa: E731
    columns = ["point", "output TPS", "user TPS p50", "TTFT p50/p99 ms", "TPOT p50/p99 ms", "AL", "acc. pos 1",
               "failed"]
    if summary["slo"]:
        columns += ["SLO", "goodput req/s"]
    rows = []
    for r in summary["points"]:
        mark = "*" if r["value"] in summary["pareto"] else ""
        one = lambda v: cell(v, "{:.1f}")  # noqa: E731
        cells = [f"{r['value']:g}{mark}", _spread(r, "output_tps", one), _spread(r, "user_tps_p50", one),
                 f"{_spread(r, 'ttft_p50_s', ms)}/{ms(r['ttft_p99_s'])}",
                 f"{_spread(r, 'tpot_p50_s', ms)}/{ms(r['tpot_p99_s'])}",
                 _spread(r, "acceptance_length", cell), cell(r.get("position1_acceptance")), cell(r["failed"], "{:g}")]
        if summary["slo"]:
            cells += ["met" if r["slo_met"] else "missed", cell(r["goodput_rps"])]
        rows.append(cells)
    repeats = max((r.get("repeats") or 1 for r in summary["points"]), default=1)
    over = (f"temperature at {summary['held_load']}" if summary["kind"] == "temperature" else
            f"{summary['kind'].replace('_', ' ')} (* on the Pareto front)")
    print_table(console, f"Sweep over {over}" + (f"; mean ± std over {repeats} repeats" if repeats > 1 else ""),
                columns, rows)
    console.print("[dim]AL: tokens per step after the first chunk, steps pooled (token-weighted); acc. pos 1: "
                  "P(a step yields >= 2 tokens | >= 1), the client's conditional acceptance of draft position 1[/]")
    if summary["find_max"] and summary["max_meeting_slo"] is not None:
        highest = summary["max_meeting_slo"]
        tail = " (the highest point tried: every point met them)" if highest == max(summary["values"]) else ""
        console.print(f"[bold]highest {summary['kind'].replace('_', ' ')} meeting the SLOs ({summary['slo']}): "
                      f"{highest:g}{tail}[/]")
    elif summary["find_max"]:
        console.print(f"[bold red]not even the lowest point met the SLOs ({summary['slo']})[/]")
