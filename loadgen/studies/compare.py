"""Comparisons between runs: what speculative decoding buys over a baseline, per load point and
per category, where it stops paying off, and how much random inputs overstate it.

A RUN is a run folder (report.json), a folder of --repeats (repeat-1/, ...), or a sweep folder
(sweep.json and one run or repeats folder per point). Points are matched along the sweeps' axis:
concurrency, request rate (open-loop runs), or the sampling temperature (a temperature sweep: what
speculation buys as sampling gets hotter). Runs over different axes are not compared.

Where the runs carry prompt ids, each point is also compared prompt by prompt (analysis/paired.py):
per-prompt speedups and AL differences, and a paired bootstrap 95 % interval for every speedup
printed; a speedup whose interval holds 1 (an AL difference: 0) is marked "within noise". The
unpaired figures (report against report) stay as they were; a repeats folder's are its first
repeat's, its paired figures average each prompt over every repeat.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console

from ..analysis import Report, request_acceptance_length
from ..analysis.paired import PromptFigures, paired_comparison, prompt_figures
from ..errors import UsageError
from ..layout import CompareFolder, RunFolder, SweepFolder
from ..records import RequestRecord, read_journal
from ..sinks import cell, print_table, write_csv, write_json_atomic
from ..sinks.plots import render_compare
from .repeats import finished_repeats

__all__ = ["compare", "load_points"]

#: the paired figures with an interval, in the order compare.csv and the console give them
PAIRED_FIGURES = ("output_tps_speedup", "user_tps_speedup", "tpot_speedup", "al_difference")
#: compare.csv's columns, in order: one line per run and load, then one per category at that load
CSV_COLUMNS = ("run", "value", "category", "output_tps_speedup", "user_tps_speedup", "tpot_speedup",
               "acceptance_length", "paired_prompts", *(f"paired_{figure}_{part}" for figure in PAIRED_FIGURES
                                                        for part in ("value", "low", "high")), "within_noise")


@dataclass(frozen=True)
class LoadPoint:
    """One load point of a RUN: its report, and the run folders behind it (its repeats, or itself)."""

    report: Report
    folders: tuple[RunFolder, ...]

    @cached_property
    def records(self) -> list[RequestRecord]:
        """Every repeat's journal (read once, where the point is compared more than once)."""
        return [r for folder in self.folders if folder.journal.exists() for r in read_journal(folder.journal)]

    @cached_property
    def prompts(self) -> dict[str, PromptFigures]:
        return prompt_figures(self.records)


def load_points(path: Path) -> tuple[str, dict[float, LoadPoint]]:
    """(axis, {value: point}) of a run, repeats or sweep folder, each report read once: the axis is
    the sweep's kind (concurrency, request_rate or temperature), or a single run's load kind."""
    folder = SweepFolder(path)
    if folder.summary.exists():
        sweep = orjson.loads(folder.summary.read_bytes())
        return sweep["kind"], {point["value"]: _load_point(folder.point(sweep["kind"], point["value"]).path)
                               for point in sweep["points"]}
    point = _load_point(path)
    return point.report.load_kind, {point.report.load_value: point}


def _axis_label(axis: str) -> str:
    """How the printed tables name the points: "load" for either load, else the axis."""
    return "temperature" if axis == "temperature" else "load"


def _load_point(path: Path) -> LoadPoint:
    repeats = finished_repeats(path)
    folders = tuple(repeats) if repeats else (RunFolder(path),)
    return LoadPoint(_report(folders[0].path), folders)


def _report(folder: Path) -> Report:
    report = RunFolder(folder).report
    try:
        data = orjson.loads(report.read_bytes())
    except FileNotFoundError:
        raise UsageError(f"{folder} holds no {report.name} or {SweepFolder(folder).summary.name}: give run or sweep "
                         "folders") from None
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"{report} is not valid JSON ({exc})") from None
    try:
        return Report.from_json(data)
    except ValueError as exc:
        raise UsageError(f"{report} is not a loadgen report ({exc})") from None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _point(run: Report, base: Report) -> dict:
    """One load point: speedups over the baseline (>1: the run is better), overall and per category."""
    lat, base_lat = run.latency, base.latency
    categories = {}
    for name, figures in run.categories.items():
        other = base.categories.get(name)
        if other:
            categories[name] = {
                "user_tps_speedup": _ratio(figures.user_tps_p50, other.user_tps_p50),
                "tpot_speedup": _ratio(other.tpot_p50_s, figures.tpot_p50_s),
                "acceptance_length": figures.acceptance_length.mean if figures.acceptance_length else None,
            }
    return {
        "output_tps_speedup": _ratio(run.summary.output_tps, base.summary.output_tps),
        "user_tps_speedup": _ratio(lat.user_tps.p50, base_lat.user_tps.p50),
        "tpot_speedup": _ratio(base_lat.tpot_s.p50, lat.tpot_s.p50),
        "acceptance_length": run.speculative.client.acceptance_length,
        "workload": run.config.workload,
        "categories": categories,
    }


def _breakeven(points: dict[float, dict]) -> dict:
    """Where the output-TPS speedup first falls to 1 or below (the first load that did not pay),
    and the load before it that still paid; None where it pays everywhere compared."""
    ordered = sorted(points)
    speedup = {v: points[v]["output_tps_speedup"] for v in ordered}
    first_losing = next((v for v in ordered if speedup[v] is not None and speedup[v] <= 1), None)
    last_paying = max((v for v in ordered if (first_losing is None or v < first_losing) and (speedup[v] or 0) > 1),
                      default=None)
    return {"last_paying": last_paying, "first_losing": first_losing}


def _random_vs_real(series: dict[str, dict[float, Report]]) -> list[dict]:
    """Random-id inputs against real prompts at the same load (same ISL and output length): the %
    by which random inputs overstate acceptance length and throughput."""
    random = {n: pts for n, pts in series.items() if next(iter(pts.values())).config.workload in ("random",
                                                                                                  "synthetic")}
    real = {n: pts for n, pts in series.items() if n not in random}
    rows = []
    for r_name, r_points in random.items():
        for name, points in real.items():
            for value in sorted(set(r_points) & set(points)):
                fake, true = r_points[value], points[value]
                al_fake, al_true = fake.speculative.client.acceptance_length, true.speculative.client.acceptance_length
                al_ratio = _ratio(al_fake, al_true)
                isl_fake, isl_true = fake.summary.isl.p50, true.summary.isl.p50
                rows.append({"random": r_name, "real": name, "value": value, "isl_p50": [isl_fake, isl_true],
                             # the contrast holds for equal input and output lengths only
                             "comparable": bool(isl_fake and isl_true and abs(isl_fake / isl_true - 1) <= 0.05
                                                and fake.config.max_tokens == true.config.max_tokens),
                             "al_overstated": al_ratio - 1 if al_ratio else None,
                             "output_tps_overstated": (_ratio(fake.summary.output_tps,
                                                              true.summary.output_tps) or 1) - 1})
    return rows


def _al_by_category(point: LoadPoint) -> dict[str, list[float]]:
    """Each category's per-request AL (measured first turns) over a point's repeats: the box plots."""
    out: dict[str, list[float]] = defaultdict(list)
    for r in point.records:
        al = request_acceptance_length(r.chunk_tokens) if r.ok and not r.warmup and r.turn == 0 else None
        if al is not None:
            out[r.category].append(al)
    return dict(sorted(out.items()))


def compare(runs: list[Path], baseline: Path, out: Path | None, console: Console) -> dict:
    axis, base = load_points(baseline)
    series = {}
    for path in runs:
        other, series[str(path)] = load_points(path)
        if other != axis:
            raise UsageError(f"{path} lies along {other.replace('_', ' ')} but the baseline {baseline} "
                             f"along {axis.replace('_', ' ')}: compare sweeps over the same axis")
    result: dict[str, Any] = {"baseline": str(baseline), "runs": {}, "axis": axis}
    for name, points in series.items():
        matched = {v: _point(points[v].report, base[v].report) for v in sorted(points) if v in base}
        for v, p in matched.items():
            p["paired"] = paired_comparison(base[v].prompts, points[v].prompts)
        if not matched:
            raise UsageError(f"{name} shares no {_axis_label(axis)} point with the baseline {baseline} "
                             f"(its points: {sorted(points)}; the baseline's: {sorted(base)})")
        result["runs"][name] = {"points": {f"{v:g}": p for v, p in matched.items()}, "breakeven": _breakeven(matched)}
    result["random_vs_real"] = _random_vs_real({n: {v: p.report for v, p in pts.items()} for n, pts in series.items()})
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        files = CompareFolder(out)
        write_json_atomic(files.result, result)
        write_csv(files.csv, CSV_COLUMNS, _csv_rows(result))
        shown = min(v for pts in series.values() for v in pts if v in base)  # the box plots' load
        al = {str(baseline): _al_by_category(base[shown]),
              **{name: _al_by_category(pts[shown]) for name, pts in series.items() if shown in pts}}
        console.print(f"[dim]compare: {files.result} · {render_compare(result, out, al)}[/]")
    _print(console, result)
    return result


def _csv_rows(result: dict) -> list[dict]:
    """compare.csv's rows: each run's load points, each followed by its categories (whose output
    TPS speedup stays empty: output TPS is measured over all of a run's requests only)."""
    rows = []
    for name, run in result["runs"].items():
        for value, p in run["points"].items():
            paired = p["paired"]
            rows.append({"run": name, "value": value, **p, **_paired_cells(paired)})
            rows += [{"run": name, "value": value, "category": category, **c,
                      **_paired_cells(paired.get("categories", {}).get(category))}
                     for category, c in p["categories"].items()]
    return rows


def _paired_cells(paired: dict | None) -> dict:
    """A row's paired columns: each interval's value, low and high, and the figures within noise."""
    if not paired or "reason" in paired:
        return {"paired_prompts": paired["prompts"] if paired else None}
    cells: dict[str, Any] = {"paired_prompts": paired["prompts"]}
    noise = []
    for figure in PAIRED_FIGURES:
        interval = paired.get(figure)
        if interval:
            cells.update({f"paired_{figure}_{part}": interval[part] for part in ("value", "low", "high")})
            if interval["within_noise"]:
                noise.append(figure)
    cells["within_noise"] = " ".join(noise)
    return cells


def _with_interval(interval: dict | None, unpaired: float | None = None) -> str:
    """A speedup as the console shows it: "1.52 [1.41, 1.63]", "within noise" where it holds 1 (0)."""
    if not interval:
        return cell(unpaired)
    noise = " [yellow]within noise[/]" if interval["within_noise"] else ""
    return f"{interval['value']:.2f} [{interval['low']:.2f}, {interval['high']:.2f}]{noise}"


def _print(console: Console, result: dict) -> None:
    label = _axis_label(result["axis"])
    for name, run in result["runs"].items():
        points = run["points"]
        paired = any("reason" not in p["paired"] for p in points.values())
        title = f"{name} against {result['baseline']} (speedup > 1: better" + (
            "; paired by prompt, 95 % bootstrap intervals)" if paired else ")")
        print_table(console, title, (label, "output TPS ×", "user TPS ×", "TPOT ×", "AL", "AL − base", "prompts"),
                    ([value, *(_with_interval(p["paired"].get(f), p[f]) for f in PAIRED_FIGURES[:3]),
                      cell(p["acceptance_length"]), _with_interval(p["paired"].get("al_difference")),
                      str(p["paired"]["prompts"])] for value, p in points.items()))
        for value, p in points.items():
            if "reason" in p["paired"]:
                console.print(f"{label} {value}: not paired by prompt ({p['paired']['reason']}): the speedups are the "
                              "reports' ratios, without intervals")
            else:
                each = p["paired"]["per_prompt_speedup"]
                console.print(f"{label} {value}: per prompt, TPOT speedup median {each['p50']:.2f} (quartiles "
                              f"{each['p25']:.2f}-{each['p75']:.2f}); {each['share_faster']:.0%} of "
                              f"{p['paired']['prompts']} prompts faster")
        first_value, first = next(iter(points.items()))
        if first["categories"]:
            by_category = first["paired"].get("categories", {})
            print_table(console, f"by category, at {label} {first_value}",
                        ("category", "user TPS ×", "TPOT ×", "AL", "AL − base"),
                        ([category, _with_interval(by_category.get(category, {}).get("user_tps_speedup"),
                                                   c["user_tps_speedup"]),
                          _with_interval(by_category.get(category, {}).get("tpot_speedup"), c["tpot_speedup"]),
                          cell(c["acceptance_length"]), _with_interval(by_category.get(category, {}).get(
                              "al_difference"))] for category, c in sorted(first["categories"].items())))
        even = run["breakeven"]
        if even["first_losing"] is not None:
            console.print(f"speculative decoding stops paying off between {label} "
                          f"{cell(even['last_paying'], '{:g}')} and {even['first_losing']:g} (output TPS no better "
                          "than the baseline's)")
        else:
            console.print(f"speculative decoding pays off at every {label} compared")
    for row in result["random_vs_real"]:
        console.print(f"random inputs ({row['random']}) overstate AL by {cell(row['al_overstated'], '{:+.1%}')} and "
                      f"output TPS by {cell(row['output_tps_overstated'], '{:+.1%}')} against {row['real']} at load "
                      f"{row['value']:g}" + ("" if row["comparable"] else
                                             f" [yellow](input lengths differ: p50 {row['isl_p50'][0]:g} vs "
                                             f"{row['isl_p50'][1]:g}; use --isl for both)[/]"))
