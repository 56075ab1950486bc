"""Comparisons between runs: what speculative decoding buys over a baseline, per load point and
per category, where it stops paying off, and how much random inputs overstate it.

A RUN is a run folder (report.json) or a sweep folder (sweep.json and one run folder per point).
Points are matched along the sweeps' axis: concurrency, request rate (open-loop runs), or the
sampling temperature (a temperature sweep: what speculation buys as sampling gets hotter). Runs
over different axes are not compared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from rich.console import Console

from ..analysis import Report
from ..errors import UsageError
from ..layout import CompareFolder, RunFolder, SweepFolder
from ..sinks import cell, print_table, write_csv, write_json_atomic
from ..sinks.plots import render_compare

__all__ = ["compare", "load_points", "sweep_axis"]

#: compare.csv's columns, in order: one line per run and load, then one per category at that load
CSV_COLUMNS = ("run", "value", "category", "output_tps_speedup", "user_tps_speedup", "tpot_speedup",
               "acceptance_length")


def load_points(path: Path) -> dict[float, Report]:
    """{load value: report} of a run folder or a sweep folder."""
    folder = SweepFolder(path)
    if folder.summary.exists():
        sweep = orjson.loads(folder.summary.read_bytes())
        return {point["value"]: _report(folder.point(sweep["kind"], point["value"]).path) for point in sweep["points"]}
    report = _report(path)
    return {report.load_value: report}


def sweep_axis(path: Path) -> str:
    """What a run or sweep folder's points lie along: the sweep's kind (concurrency, request_rate or
    temperature), or a single run's load kind."""
    folder = SweepFolder(path)
    if folder.summary.exists():
        return orjson.loads(folder.summary.read_bytes())["kind"]
    return _report(path).load_kind


def _axis_label(axis: str) -> str:
    """How the printed tables name the points: "load" for either load, else the axis."""
    return "temperature" if axis == "temperature" else "load"


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


def compare(runs: list[Path], baseline: Path, out: Path | None, console: Console) -> dict:
    axis = sweep_axis(baseline)
    for path in runs:
        other = sweep_axis(path)
        if other != axis:
            raise UsageError(f"{path} lies along {other.replace('_', ' ')} but the baseline {baseline} "
                             f"along {axis.replace('_', ' ')}: compare sweeps over the same axis")
    base = load_points(baseline)
    series = {str(path): load_points(path) for path in runs}
    result: dict[str, Any] = {"baseline": str(baseline), "runs": {}, "axis": axis}
    for name, points in series.items():
        matched = {v: _point(points[v], base[v]) for v in sorted(points) if v in base}
        if not matched:
            raise UsageError(f"{name} shares no {_axis_label(axis)} point with the baseline {baseline} "
                             f"(its points: {sorted(points)}; the baseline's: {sorted(base)})")
        result["runs"][name] = {"points": {f"{v:g}": p for v, p in matched.items()}, "breakeven": _breakeven(matched)}
    result["random_vs_real"] = _random_vs_real(series)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        files = CompareFolder(out)
        write_json_atomic(files.result, result)
        write_csv(files.csv, CSV_COLUMNS, _csv_rows(result))
        console.print(f"[dim]compare: {files.result} · {render_compare(result, out)}[/]")
    _print(console, result)
    return result


def _csv_rows(result: dict) -> list[dict]:
    """compare.csv's rows: each run's load points, each followed by its categories (whose output
    TPS speedup stays empty: output TPS is measured over all of a run's requests only)."""
    rows = []
    for name, run in result["runs"].items():
        for value, p in run["points"].items():
            rows.append({"run": name, "value": value, **p})
            rows += [{"run": name, "value": value, "category": category, **c}
                     for category, c in p["categories"].items()]
    return rows


def _print(console: Console, result: dict) -> None:
    label = _axis_label(result["axis"])
    for name, run in result["runs"].items():
        print_table(console, f"{name} against {result['baseline']} (speedup > 1: better)",
                    (label, "output TPS ×", "user TPS ×", "TPOT ×", "AL"),
                    ([value, cell(p["output_tps_speedup"]), cell(p["user_tps_speedup"]), cell(p["tpot_speedup"]),
                      cell(p["acceptance_length"])] for value, p in run["points"].items()))
        first = next(iter(run["points"].values()))
        if first["categories"]:
            print_table(console, f"by category, at {label} {next(iter(run['points']))}",
                        ("category", "user TPS ×", "TPOT ×", "AL"),
                        ([category, cell(c["user_tps_speedup"]), cell(c["tpot_speedup"]),
                          cell(c["acceptance_length"])] for category, c in sorted(first["categories"].items())))
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
