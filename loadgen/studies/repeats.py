"""--repeats N: the whole run N times, each a complete run folder (OUTPUT_DIR/repeat-1, ...), and
the spread of its headline figures between repeats (repeats.json and a console table).

Every repeat keeps the run's --seed: the same prompts in the same order (and, where each repeat
starts the built-in emulator afresh, its same draws; a sweep's one emulator goes on drawing), so
what differs between repeats is the server and the machine, not the sample, and `compare` can pair
a prompt across repeats and runs. A repeat whose folder holds a
finished report is kept, so an interrupted --repeats run (or a sweep's point) resumes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from rich.console import Console

from ..analysis import Report
from ..config import RunConfig
from ..layout import RunFolder
from ..sinks import cell, print_table, write_json_atomic

__all__ = ["HEADLINE", "REPEATS_SUMMARY", "headline_figures", "repeat_folders", "finished_repeats", "run_repeats",
           "spread"]

#: the figures whose spread is summarised: name -> its value in a report
HEADLINE: dict[str, Callable[[Report], float | None]] = {
    "output_tps": lambda r: r.summary.output_tps,
    "user_tps_p50": lambda r: r.latency.user_tps.p50,
    "tpot_p50_s": lambda r: r.latency.tpot_s.p50,
    "ttft_p50_s": lambda r: r.latency.ttft_s.p50,
    #: token-weighted: every decode step of every request pooled
    "acceptance_length": lambda r: r.speculative.client.acceptance_length,
}
REPEATS_SUMMARY = "repeats.json"


def repeat_folders(out: Path, repeats: int) -> list[RunFolder]:
    return [RunFolder(out / f"repeat-{k}") for k in range(1, repeats + 1)]


def finished_repeats(out: Path) -> list[RunFolder]:
    """The repeat folders under `out` holding a report, in order (none: `out` is one run's folder)."""
    found = sorted((p for p in out.glob("repeat-*") if p.name.removeprefix("repeat-").isdigit()),
                   key=lambda p: int(p.name.removeprefix("repeat-")))
    return [RunFolder(p) for p in found if RunFolder(p).report.exists()]


def spread(values: Sequence[float | None]) -> dict:
    """{mean, std, min, max, cv, values} of one figure over the repeats; std is the sample standard
    deviation (n - 1), cv = std / mean. None throughout where a repeat lacks the figure."""
    if not values or any(v is None for v in values):
        return {"mean": None, "std": None, "min": None, "max": None, "cv": None, "values": list(values)}
    arr = np.array(values, dtype=np.float64)
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    mean = float(arr.mean())
    return {"mean": mean, "std": std, "min": float(arr.min()), "max": float(arr.max()),
            "cv": std / mean if mean else None, "values": arr.tolist()}


def headline_figures(reports: Sequence[Report]) -> dict[str, dict]:
    return {name: spread([value(r) for r in reports]) for name, value in HEADLINE.items()}


def run_repeats(config: RunConfig, console: Console, run: Callable[[RunConfig, Console], Report],
                finished: Callable[[RunFolder], Report | None]) -> list[Report] | None:
    """Each repeat run (or kept where `finished` finds its report), then repeats.json and the table;
    None where a repeat was interrupted (its partial report written, no summary)."""
    out = config.output_dir
    reports = []
    for k, folder in enumerate(repeat_folders(out, config.repeats), 1):
        report = finished(folder)
        if report is None:
            console.rule(f"[bold]repeat {k} of {config.repeats}")
            report = run(dataclasses.replace(config, output_dir=folder.path, repeats=1, replace=True), console)
            if report.partial:
                return None
        else:
            console.print(f"[dim]repeat {k}: done before, kept ({folder.path})[/]")
        reports.append(report)
    figures = headline_figures(reports)
    write_json_atomic(out / REPEATS_SUMMARY, {"repeats": config.repeats, "seed": config.seed, "same_seed": True,
                                           "folders": [f.path.name for f in repeat_folders(out, config.repeats)],
                                           "figures": figures})
    print_table(console, f"{config.repeats} repeats (seed {config.seed} each: the same prompts)",
                ("figure", "mean", "std", "min", "max", "CV"),
                ([name, cell(f["mean"], "{:.4g}"), cell(f["std"], "{:.3g}"), cell(f["min"], "{:.4g}"),
                  cell(f["max"], "{:.4g}"), cell(f["cv"], "{:.1%}")]
                 for name, f in figures.items()))
    console.print(f"[dim]repeats: {out / REPEATS_SUMMARY}[/]")
    return reports
