"""Pictures (matplotlib PNG) and one self-contained HTML page per run, sweep or comparison.

Everything is drawn from the JSON the run already wrote (report.json, sweep.json,
compare.json), so `loadgen report DIR` can draw a finished run again. The HTML embeds the PNGs
(base64), so the page is one file that can be mailed or attached to a ticket.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import matplotlib

from loadgen.analysis.report_types import AcceptanceBreakdown, AcceptanceViews, HeldLoad, Report

from ..layout import CompareFolder, MatrixFolder, RunFolder, SweepFolder, TuneFolder
from .tables import cell

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt

__all__ = ["render_compare", "render_matrix", "render_run", "render_sweep", "render_tune"]

_STYLE: dict[str, Any] = {"figure.figsize": (7.0, 4.0), "figure.dpi": 100, "axes.grid": True, "grid.alpha": 0.3,
          "axes.spines.top": False, "axes.spines.right": False}


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _acceptance_histogram(report: Report, path: Path) -> Path | None:
    client = report.speculative.client
    if not client.histogram:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    tokens = sorted(int(k) for k in client.histogram)
    counts = [client.histogram[str(k)] for k in tokens]
    total = sum(counts)
    left.bar(tokens, [c / total for c in counts], color="#4c72b0")
    left.set(xlabel="tokens per step", ylabel="share of steps", xticks=tokens,
             title=f"Tokens per step (AL {client.acceptance_length:.2f})")
    positions = sorted(int(k) for k in client.conditional_acceptance if int(k) > 1)
    if positions:
        right.plot([k - 1 for k in positions], [client.conditional_acceptance[str(k)] for k in positions],
                   marker="o", color="#dd8452", label="client (tokens per chunk)")
        server = report.speculative.server
        unconditional = (server.per_position if server else None) or []
        if unconditional:
            # the server counts acceptance per position over all drafts; conditional on the one before,
            # it compares with the client's figure
            before = [1.0, *unconditional[:-1]]
            conditional = [p / q if q else None for p, q in zip(unconditional, before, strict=True)]
            right.plot(range(1, len(conditional) + 1), conditional, marker="s", ls="--", color="#55a868",
                       label="server counters")
        right.set(xlabel="draft position", ylabel="conditional acceptance", ylim=(0, 1.05),
                  xticks=[k - 1 for k in positions], title="Conditional acceptance per position")
        right.legend(fontsize=8)
    else:
        right.set_axis_off()
    return _save(fig, path)


def _al_by_category(report: Report, path: Path) -> Path | None:
    rows = [(name, c.acceptance_length) for name, c in sorted(report.categories.items())
            if c.acceptance_length]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.2))
    names = [n for n, _ in rows]
    ax.barh(names, [al.mean for _, al in rows], xerr=[al.std for _, al in rows], color="#4c72b0",
            ecolor="#333333", capsize=3)
    ax.invert_yaxis()
    ax.set(xlabel="acceptance length (mean per request, ± std)", title="Acceptance length by category")
    return _save(fig, path)


def _al_by_overlap(report: Report, path: Path) -> Path | None:
    """Mean per-request AL in each overlap quartile, one line per category (--output-ids): a line
    that rises says the drafter gains where the output copies the prompt."""
    overlap = report.overlap
    if overlap is None or not overlap.available:
        return None
    fig, ax = plt.subplots()
    for name, category in overlap.categories.items():
        bins = category.al_by_overlap
        r = "" if category.al_correlation is None else f", r = {category.al_correlation:.2f}"
        ax.plot([(b.overlap_low + b.overlap_high) / 2 for b in bins], [b.mean_acceptance_length for b in bins],
                marker="o", label=f"{name} (4-gram share {category.ngram_share:.0%}{r})")
    ax.set(xlabel="prompt-output overlap (BLEU-4 style on token ids; quartile midpoints)",
           ylabel="acceptance length (mean per request)", title="Acceptance length against prompt-output overlap")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _groups(views: AcceptanceViews) -> list[tuple[str, AcceptanceBreakdown]]:
    """The categories' breakdowns, or the run's alone where there is one category."""
    if len(views.by_category) > 1:
        return sorted(views.by_category.items())
    return [("all requests", views.run)]


def _al_by_position(report: Report, path: Path) -> Path | None:
    """The seeds' figure 5: tokens per step by the output position the step starts at, per category."""
    views = report.acceptance
    if views is None or not any(len(b.by_position) > 1 for _, b in _groups(views)):
        return None
    fig, ax = plt.subplots()
    for name, breakdown in _groups(views):
        rows = breakdown.by_position
        ax.plot([(b.start_tokens + b.end_tokens) / 2 for b in rows], [b.acceptance_length for b in rows],
                marker="o", label=name)
    ax.set(xlabel=f"output position where the step starts (tokens, buckets of {views.bucket_tokens})\n"
                  "a run's last bucket holds the requests' last steps, cut short by max_tokens or EOS",
           ylabel="tokens per step", title="Acceptance length by output position")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _overlap_section(report: Report) -> tuple[str, str] | None:
    """The overlap table per category, or the one line that says why there is none; nothing where
    the run did not ask for ids."""
    overlap = report.overlap
    if overlap is None or not report.config.output_ids:
        return None
    if not overlap.available:
        return "Prompt-output overlap", f"<p>{html.escape(overlap.reason or '')}</p>"
    rows = [[name, str(c.requests), f"{c.mean_overlap:.3f}", f"{c.ngram_share:.1%}", cell(c.al_correlation, "{:.2f}"),
             cell(c.al_slope, "{:.2f}"), c.verdict] for name, c in overlap.categories.items()]
    return "Prompt-output overlap", (f"<p>{html.escape(overlap.method)}</p>" + _table(
        ["category", "requests", "overlap", "4-gram share", "r (overlap, AL)", "AL slope", "verdict"], rows))


def _al_spread(report: Report, path: Path) -> Path | None:
    """The seeds' figure 6: per-request AL as box plots per category (whiskers at min and max, the
    triangle the mean), drawn from the report's five-number summaries."""
    views = report.acceptance
    groups = [(n, b.per_request) for n, b in _groups(views)] if views else []
    stats: list[dict[str, Any]] = [
        {"label": f"{n} ({d.count})", "whislo": d.min, "q1": d.p25, "med": d.p50, "q3": d.p75, "whishi": d.max,
         "mean": d.mean, "fliers": []} for n, d in groups if d.count]
    if not stats:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(stats) + 1.4))
    ax.bxp(stats, orientation="horizontal", showmeans=True, patch_artist=True,
           boxprops={"facecolor": "#c6d4ea"}, medianprops={"color": "#333333"})
    ax.invert_yaxis()
    ax.set(xlabel="AL per request, first chunk excluded (box p25-p75, whiskers min-max, triangle mean)",
           title="Per-request acceptance length")
    return _save(fig, path)


def _al_by_length(report: Report, path: Path) -> Path | None:
    """The seeds' figure 7: per-request AL against output length, binned (mean ± std of the bin's requests)."""
    views = report.acceptance
    if views is None or len(views.run.by_output_length) < 2:
        return None  # every request of one length (ignore_eos at one max_tokens): nothing to draw against
    fig, ax = plt.subplots()
    for name, breakdown in _groups(views):
        rows = breakdown.by_output_length
        ax.errorbar([(b.start_tokens + b.end_tokens) / 2 for b in rows], [b.acceptance_length_mean for b in rows],
                    yerr=[b.acceptance_length_std for b in rows], marker="o", capsize=3, label=name)
        for b in rows:
            ax.annotate(str(b.requests), ((b.start_tokens + b.end_tokens) / 2, b.acceptance_length_mean),
                        textcoords="offset points", xytext=(4, 4), fontsize=7, color="#666666")
    ax.set(xlabel=f"output tokens (bins of {views.bucket_tokens})", ylabel="acceptance length per request",
           title="Acceptance length against output length (mean ± std, requests)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _definitions_table(views: AcceptanceViews) -> str:
    """The run's and each category's AL under the three definitions, labelled."""
    groups = [("all requests", views.run), *sorted(views.by_category.items())]
    return _table(["requests", "n", "token-weighted (steps pooled)", "per-request mean", "specdec_bench",
                   "per-request std"],
                  [[name, str(b.definitions.requests), cell(b.definitions.token_weighted),
                    cell(b.definitions.per_request_mean), cell(b.definitions.specdec_bench), cell(b.per_request.std)]
                   for name, b in groups])


def _time_series(report: Report, path: Path) -> Path | None:
    series = report.time_series
    if len(series) < 2:
        return None
    t = [row.t_s for row in series]
    fig, (top, middle, bottom) = plt.subplots(3, 1, sharex=True, figsize=(7, 6))
    top.plot(t, [row.output_tps for row in series], color="#4c72b0")
    top.set(ylabel="output tok/s", title="Over the run (per second)")
    middle.plot(t, [row.in_flight for row in series], color="#dd8452", label="in flight")
    target = report.load.target_concurrency if isinstance(report.load, HeldLoad) else None
    if target:
        middle.axhline(target, color="#999999", ls="--", lw=1, label="target")
    middle.set(ylabel="requests")
    middle.set_ylim(bottom=0)
    middle.legend(fontsize=8, loc="lower left")
    al = [(row.t_s, row.acceptance_length) for row in series if row.acceptance_length]
    if al:
        bottom.plot(*zip(*al, strict=True), color="#55a868", label="acceptance length")
    failed = [(row.t_s, row.failed) for row in series if row.failed]
    if failed:
        twin = bottom.twinx()
        twin.bar(*zip(*failed, strict=True), color="#c44e52", alpha=0.5, width=0.8, label="failed")
        twin.set_ylabel("failed")
    bottom.set(xlabel="seconds from the first send", ylabel="AL")
    bottom.set_ylim(bottom=1)  # one token per step is the floor
    return _save(fig, path)


def _page(title: str, sections: list[tuple[str, str]], images: list[Path], out: Path) -> Path:
    figures = "".join(f'<figure><img alt="{html.escape(p.stem)}" src="data:image/png;base64,'
                      f'{base64.b64encode(p.read_bytes()).decode()}"></figure>' for p in images)
    body = "".join(f"<h2>{html.escape(h)}</h2>{content}" for h, content in sections)
    # an empty icon: served pages would otherwise make the browser ask for /favicon.ico (a 404)
    out.write_text(f"""<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,">
<title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;font-size:14px}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}
th{{background:#f3f3f3}}img{{max-width:100%}}figure{{margin:1em 0}}</style></head>
<body><h1>{html.escape(title)}</h1>{body}{figures}</body></html>""")
    return out


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    cells = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{cells}</table>"


def render_run(report: Report, out: Path) -> Path:
    """PNGs and report.html in `out` for one run; returns the HTML's path."""
    files = RunFolder(out)
    with matplotlib.style.context(_STYLE):
        images = [p for p in (_acceptance_histogram(report, files.acceptance_plot),
                              _al_by_category(report, files.al_by_category_plot),
                              _time_series(report, files.time_series_plot),
                              _al_by_overlap(report, files.overlap_plot),
                              _al_by_position(report, files.al_by_position_plot),
                              _al_spread(report, files.al_spread_plot),
                              _al_by_length(report, files.al_by_length_plot)) if p]
    cfg, summary, spec = report.config, report.summary, report.speculative
    overview = _table(["figure", "value"], [
        ["requests ok / failed / cancelled", f"{summary.requests_completed} / {summary.requests_failed} / "
                                             f"{summary.requests_cancelled}"],
        ["output TPS", cell(summary.output_tps, "{:.1f}")],
        ["acceptance length (client)", cell(spec.client.acceptance_length)],
        ["acceptance length (server)", cell(spec.server.acceptance_length if spec.server else None)],
        *([["draft coverage (drafted / decode steps)", f"{spec.coverage.coverage:.1%} ({spec.coverage.drafted_steps}"
                                                       f" / {spec.coverage.decode_steps})"]] if spec.coverage else []),
    ])
    latency = _table(["metric", "p50 ms", "p90 ms", "p99 ms"], [
        [name, *(cell(None if getattr(d, p) is None else getattr(d, p) * 1e3) for p in ("p50", "p90", "p99"))]
        for name, d in (("TTFT", report.latency.ttft_s), ("TPOT", report.latency.tpot_s),
                        ("step / ICL", report.latency.icl_s), ("E2E", report.latency.e2e_s))])
    title = f"loadgen · {cfg.engine} · {cfg.model} · {cfg.workload}" + (" · partial" if report.partial else "")
    sections = [("Summary", overview), ("Latency", latency)]
    if report.acceptance is not None:
        sections.append(("Acceptance length by definition", _definitions_table(report.acceptance)))
    cache = report.prefix_cache
    if cache is not None:
        sections.append(("Prefix cache", _table(["figure", "value"], [
            ["hit rate", cell(cache.hit_rate, "{:.1%}")], ["source", cache.source or "-"],
            ["expected from shared prefixes", cell(cache.expected_hit_rate, "{:.1%}")],
            ["isolation", cache.isolation or "-"], *[["warning", w] for w in cache.warnings]])))
    overlap = _overlap_section(report)
    if overlap is not None:
        sections.append(overlap)
    return _page(title, sections, images, files.html)


def _sweep_by_temperature(points: list[dict], held_load: str, path: Path) -> Path:
    """A temperature sweep's figures against the temperature: acceptance (AL and draft position 1's
    conditional acceptance), throughput (output and user TPS) and TPOT, one panel each."""
    temps = [p["value"] for p in points]
    fig, (accept, speed, tpot) = plt.subplots(3, 1, sharex=True, figsize=(7.0, 8.0))
    accept.plot(temps, [p["acceptance_length"] for p in points], "-o", color="#4c72b0", label="AL (steps pooled)")
    accept.set(ylabel="AL (tokens per step)", ylim=(1, None))
    rate = accept.twinx()
    rate.plot(temps, [p.get("position1_acceptance") for p in points], "--s", color="#dd8452",
              label="acceptance at draft position 1")
    rate.set(ylabel="P(>= 2 tokens | >= 1)", ylim=(0, 1.05))
    accept.legend(handles=accept.get_lines() + rate.get_lines(), fontsize=8)
    accept.set_title(f"Against the sampling temperature, at {held_load}")
    speed.plot(temps, [p["output_tps"] for p in points], "-o", color="#4c72b0", label="output TPS (all requests)")
    user = speed.twinx()
    user.plot(temps, [p["user_tps_p50"] for p in points], "--s", color="#55a868", label="user TPS p50")
    speed.set_ylabel("output TPS")
    user.set_ylabel("user TPS p50")
    speed.legend(handles=speed.get_lines() + user.get_lines(), fontsize=8)
    tpot.plot(temps, [None if p["tpot_p50_s"] is None else p["tpot_p50_s"] * 1e3 for p in points], "-o",
              color="#c44e52")
    tpot.set(xlabel="temperature", ylabel="TPOT p50 (ms)")
    tpot.set_xticks(temps, [f"{t:g}" for t in temps])
    return _save(fig, path)


def render_sweep(summary: dict, out: Path) -> Path:
    """pareto.png (temperature.png for a temperature sweep) and sweep.html in `out`."""
    files = SweepFolder(out)
    points = [p for p in summary["points"] if p["output_tps"] and p["user_tps_p50"]]
    images = []
    if points and summary["kind"] == "temperature":
        with matplotlib.style.context(_STYLE):
            images.append(_sweep_by_temperature(points, summary["held_load"], files.temperature_plot))
    elif points:
        with matplotlib.style.context(_STYLE):
            fig, ax = plt.subplots()
            front = set(summary["pareto"])
            ax.plot([p["user_tps_p50"] for p in points], [p["output_tps"] for p in points], color="#999999", lw=1)
            for p in points:
                on = p["value"] in front
                ax.scatter(p["user_tps_p50"], p["output_tps"], color="#4c72b0" if on else "#bbbbbb", zorder=3)
                ax.annotate(f"{p['value']:g}", (p["user_tps_p50"], p["output_tps"]), textcoords="offset points",
                            xytext=(4, 4), fontsize=8)
            ax.set(xlabel="user TPS (p50, tokens/s per request)", ylabel="output TPS (all requests)",
                   title=f"Throughput against speed per user, by {summary['kind'].replace('_', ' ')} "
                         "(blue: Pareto front)")
            images.append(_save(fig, files.pareto_plot))
    rows = [[f"{p['value']:g}" + ("*" if p["value"] in summary["pareto"] else ""), cell(p["output_tps"], "{:.1f}"),
             cell(p["user_tps_p50"], "{:.1f}"), cell(p["acceptance_length"]), str(p["failed"]),
             {True: "met", False: "missed", None: "-"}[p["slo_met"]], cell(p.get("position1_acceptance")),
             cell(None if p["tpot_p50_s"] is None else p["tpot_p50_s"] * 1e3, "{:.2f}")] for p in summary["points"]]
    table = _table([summary["kind"], "output TPS", "user TPS p50", "AL", "failed", "SLO", "acceptance pos 1",
                    "TPOT p50 ms"], rows)
    heading = "Points" if summary["kind"] == "temperature" else "Points (* Pareto front)"
    return _page(f"loadgen sweep over {summary['kind'].replace('_', ' ')}", [(heading, table)],
                 images, files.html)


def _compare_by_temperature(result: dict, path: Path) -> Path:
    """Sweeps over temperature against the baseline's: each run's speedups (output TPS, user TPS, TPOT)
    and its AL against the temperature."""
    with matplotlib.style.context(_STYLE):
        fig, (speedup, al) = plt.subplots(2, 1, sharex=True, figsize=(7.0, 6.0))
        for name, run in result["runs"].items():
            temps = [float(v) for v in run["points"]]
            for key, style in (("output_tps_speedup", "-o"), ("user_tps_speedup", "--s"), ("tpot_speedup", ":^")):
                speedup.plot(temps, [p[key] for p in run["points"].values()], style,
                             label=f"{Path(name).name}: {key.replace('_speedup', '').replace('_', ' ')}")
            al.plot(temps, [p["acceptance_length"] for p in run["points"].values()], "-o", label=Path(name).name)
        speedup.axhline(1, color="#c44e52", lw=1, ls=":")
        speedup.set_ylim(bottom=min(0.9, speedup.get_ylim()[0]))  # the break-even line always in view
        speedup.set(ylabel="speedup over the baseline",
                    title=f"Against {Path(result['baseline']).name} by sampling temperature (above 1: better)")
        speedup.legend(fontsize=8)
        temps = sorted({float(v) for run in result["runs"].values() for v in run["points"]})
        al.set_xticks(temps, [f"{t:g}" for t in temps])
        al.set(xlabel="temperature", ylabel="AL (tokens per step)", ylim=(1, None))
        al.legend(fontsize=8)
        return _save(fig, path)


def _speedup_by_load(result: dict, path: Path) -> Path:
    """Each run's output and user TPS speedups against the load (log 2)."""
    with matplotlib.style.context(_STYLE):
        fig, ax = plt.subplots()
        for name, run in result["runs"].items():
            loads = [float(v) for v in run["points"]]
            for key, style in (("output_tps_speedup", "-o"), ("user_tps_speedup", "--s")):
                ax.plot(loads, [p[key] for p in run["points"].values()], style,
                        label=f"{Path(name).name}: {key.replace('_speedup', '').replace('_', ' ')}")
        ax.axhline(1, color="#c44e52", lw=1, ls=":")
        ax.set_xscale("log", base=2)
        loads = sorted({float(v) for run in result["runs"].values() for v in run["points"]})
        ax.set_xticks(loads, [f"{v:g}" for v in loads])
        ax.set_ylim(bottom=min(0.9, ax.get_ylim()[0]))  # the break-even line always in view
        ax.set(xlabel="load (concurrency or request rate)", ylabel="speedup over the baseline",
               title=f"Against {Path(result['baseline']).name} (above 1: better)")
        ax.legend(fontsize=8)
        return _save(fig, path)


def render_compare(result: dict, out: Path, al_by_category: dict[str, dict[str, list[float]]] | None = None) -> Path:
    """speedup.png (temperature.png for sweeps over temperature) and compare.html in `out`; where the
    runs were paired by prompt, the per-prompt speedups' distribution (prompt_speedups.png), and with
    `al_by_category` ({run: {category: per-request ALs}}) their box plots per category and run
    (al_boxes.png)."""
    files = CompareFolder(out)
    by_temperature = result.get("axis") == "temperature"
    images = [_compare_by_temperature(result, files.temperature_plot) if by_temperature
              else _speedup_by_load(result, files.speedup_plot)]
    images += _prompt_speedups(result, files) + (_al_boxes(al_by_category, files) if al_by_category else [])
    rows = [[Path(name).name, value, cell(p["output_tps_speedup"]), cell(p["user_tps_speedup"]),
             cell(p["tpot_speedup"]), cell(p["acceptance_length"])]
            for name, run in result["runs"].items() for value, p in run["points"].items()]
    table = _table(["run", "temperature" if by_temperature else "load", "output TPS ×", "user TPS ×", "TPOT ×", "AL"],
                   rows)
    return _page("loadgen compare", [("Speedups", table)], images, files.html)


def _prompt_speedups(result: dict, files: CompareFolder) -> list[Path]:
    """Each run's per-prompt TPOT speedups at its lowest paired load, as a histogram: how many prompts
    got how much faster (1: no change)."""
    series = {}
    for name, run in result["runs"].items():
        paired = [(v, p["paired"]) for v, p in run["points"].items() if "per_prompt" in p["paired"]]
        if paired:
            value, first = paired[0]
            axis = "temperature" if result.get("axis") == "temperature" else "load"
            series[f"{Path(name).name} ({axis} {value})"] = [p["speedup"] for p in first["per_prompt"]]
    if not series:
        return []
    with matplotlib.style.context(_STYLE):
        fig, ax = plt.subplots()
        for label, speedups in series.items():
            ax.hist(speedups, bins=min(40, max(5, len(speedups) // 4)), alpha=0.6, label=label)
        ax.axvline(1, color="#c44e52", lw=1, ls=":")
        ax.set(xlabel="per-prompt TPOT speedup (baseline TPOT / run TPOT)", ylabel="prompts",
               title=f"Per-prompt speedup over {Path(result['baseline']).name}")
        ax.legend(fontsize=8)
        return [_save(fig, files.prompt_speedups_plot)]


def _al_boxes(al_by_category: dict[str, dict[str, list[float]]], files: CompareFolder) -> list[Path]:
    """Per-request AL box plots per category, one box per run side by side in each category."""
    categories = sorted({c for per_run in al_by_category.values() for c in per_run})
    runs = list(al_by_category)
    if not categories:
        return []
    width = 0.8 / len(runs)
    with matplotlib.style.context(_STYLE):
        fig, ax = plt.subplots(figsize=(min(16.0, max(6.4, 0.4 * len(categories) * len(runs))), 4.8))
        for i, name in enumerate(runs):
            data = [al_by_category[name].get(c) or [float("nan")] for c in categories]
            boxes = ax.boxplot(data, positions=[j + (i - (len(runs) - 1) / 2) * width for j in range(len(categories))],
                               widths=width * 0.9, patch_artist=True, showfliers=False)
            for box in boxes["boxes"]:
                box.set_facecolor(f"C{i}")
                box.set_alpha(0.6)
            ax.plot([], [], "s", color=f"C{i}", label=Path(name).name)
        ax.set_xticks(range(len(categories)), categories, rotation=30, ha="right")
        ax.set(ylabel="acceptance length per request (tokens per step)", title="Per-request AL by category and run")
        ax.legend(fontsize=8)
        return [_save(fig, files.al_boxes_plot)]


def render_matrix(summary: dict, out: Path) -> Path:
    """pareto-<workload>.png (every recipe's curve of output TPS against user TPS) and matrix.html."""
    files = MatrixFolder(out)
    images = []
    for workload in summary["workloads"]:
        rows = [r for r in summary["rows"] if r["workload"] == workload and r["output_tps"] and r["user_tps_p50"]]
        if not rows:
            continue
        with matplotlib.style.context(_STYLE):
            fig, ax = plt.subplots()
            for recipe in dict.fromkeys(r["recipe"] for r in rows):
                mine = sorted((r for r in rows if r["recipe"] == recipe), key=lambda r: r["value"])
                baseline = recipe == summary["baseline"]
                ax.plot([r["user_tps_p50"] for r in mine], [r["output_tps"] for r in mine], "--o" if baseline else "-o",
                        color="#555555" if baseline else None, label=recipe + (" (baseline)" if baseline else ""))
                for r in mine:
                    ax.annotate(f"{r['value']:g}", (r["user_tps_p50"], r["output_tps"]), textcoords="offset points",
                                xytext=(4, 4), fontsize=7)
            ax.set(xlabel="user TPS (p50, tokens/s per request)", ylabel="output TPS (all requests)",
                   title=f"{workload}: throughput against speed per user, by {summary['kind'].replace('_', ' ')}")
            ax.legend(fontsize=8)
            images.append(_save(fig, files.pareto_plot(workload)))
    table = _table(["recipe", "workload", summary["kind"].replace("_", " "), "output TPS", "user TPS p50", "AL",
                    "output TPS ×", "user TPS ×"],
                   [[r["recipe"], r["workload"], f"{r['value']:g}", cell(r["output_tps"], "{:.1f}"),
                     cell(r["user_tps_p50"], "{:.1f}"), cell(r["acceptance_length"]),
                     cell(r.get("output_tps_speedup")), cell(r.get("user_tps_speedup"))] for r in summary["rows"]])
    status = _table(["recipe", "status", "start-up s", "engine"],
                    [[label, info.get("status", "-"), cell(info.get("startup_s"), "{:.1f}"),
                      f"{info.get('engine', '-')} {info.get('engine_version', '')}"]
                     for label, info in summary["recipes"].items()])
    return _page(f"loadgen matrix · baseline {summary['baseline']}", [("Recipes", status), ("Points", table)],
                 images, files.html)


def render_tune(summary: dict, out: Path) -> Path:
    """heatmap.png (measured speedup per concurrency and K, the recommendation framed),
    speedup.png (measured speedups with their intervals against load, the model's curves through
    and beyond them, and the oracle's) and tune.html in `out`."""
    files = TuneFolder(out)
    lengths = [k for k in summary["draft_lengths"] if k]
    loads = summary["concurrencies"]
    rows = {(r["concurrency"], r["draft_length"]): r for r in summary["rows"]}
    chosen = {d["concurrency"]: d["recommended"] for d in summary["decisions"]}
    images = []
    with matplotlib.style.context({**_STYLE, "axes.grid": False}):
        fig, ax = plt.subplots()
        grid = [[rows[(c, k)]["speedup"] for k in lengths] for c in loads]
        # diverging around 1: red slower than no speculation, blue faster
        low, high = min(min(r) for r in grid), max(max(r) for r in grid)
        norm = matplotlib.colors.TwoSlopeNorm(vcenter=1.0, vmin=min(low, 0.99), vmax=max(high, 1.01))
        image = ax.imshow(grid, cmap="RdBu", norm=norm, aspect="auto")
        for i, c in enumerate(loads):
            for j, k in enumerate(lengths):
                dark = abs(norm(grid[i][j]) - 0.5) > 0.3  # deep red or blue under the number
                ax.text(j, i, f"{grid[i][j]:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if dark else "black")
                if chosen[c] == k:
                    ax.add_patch(matplotlib.patches.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=2))
        ax.set_xticks(range(len(lengths)), [str(k) for k in lengths])
        ax.set_yticks(range(len(loads)), [str(c) for c in loads])
        ax.set(xlabel="draft length K", ylabel="concurrency",
               title="TPOT speedup over no speculation (framed: recommended)")
        fig.colorbar(image, ax=ax)
        images.append(_save(fig, files.heatmap))
    with matplotlib.style.context(_STYLE):
        fig, ax = plt.subplots()
        predicted = summary["predictions"]
        grid_loads = sorted({p["concurrency"] for p in predicted})
        for k in lengths:
            mine = [rows[(c, k)] for c in loads]
            line = ax.errorbar(loads, [r["speedup"] for r in mine],
                               yerr=[[r["speedup"] - r["speedup_low"] for r in mine],
                                     [r["speedup_high"] - r["speedup"] for r in mine]], fmt="o", capsize=3,
                               label=f"K={k} measured")
            ax.plot(grid_loads, [p["speedup"] for c in grid_loads for p in predicted
                                 if p["concurrency"] == c and p["draft_length"] == k],
                    "-", color=line[0].get_color(), lw=1, alpha=0.7)
        oracle = [(c, max(p["oracle_speedup"] for p in predicted if p["concurrency"] == c and p["oracle_speedup"]))
                  for c in grid_loads]
        ax.plot([c for c, _ in oracle], [o for _, o in oracle], ":", color="#333333", label="oracle drafter (best K)")
        ax.axhline(1, color="#c44e52", lw=1, ls="--")
        ax.set_xscale("log", base=2)
        ax.set_xticks(grid_loads, [f"{c:g}" for c in grid_loads])
        ax.set(xlabel="concurrency", ylabel="speedup over no speculation",
               title="Measured (95 % intervals), the fitted model (lines), the oracle (dotted)")
        ax.legend(fontsize=7)
        images.append(_save(fig, files.speedup_plot))
    decisions = _table(["concurrency", "best K", "recommended", "speedup", "runner-up within noise"],
                       [[str(d["concurrency"]), str(d["best"]),
                         str(d["recommended"]) if d["speculation_pays"] else "off", cell(d["recommended_speedup"]),
                         "yes" if d["runner_up_within_noise"] else "no"] for d in summary["decisions"]])
    measured = _table(["concurrency", "K", "speedup", "95 % interval", "TPOT ms", "AL", "step ms", "predicted",
                       "rejected", "oracle"],
                      [[str(r["concurrency"]), str(r["draft_length"]), cell(r["speedup"]),
                        f"{r['speedup_low']:.2f}–{r['speedup_high']:.2f}", cell(r["tpot_ms"]),
                        cell(r["acceptance_length"]), cell(r["step_ms"]), cell(r["predicted_speedup"]),
                        cell(r["rejected_share"], "{:.0%}"), cell(r["oracle_speedup"])] for r in summary["rows"]])
    model = summary["model"]
    fit = (f"<p>step = {model['base_ms']:.2f} ms + {model['token_ms']:.4f} ms/token below the knee "
           f"({'none' if model['knee_tokens'] is None else format(model['knee_tokens'], '.1f')} tokens) + "
           f"{model['compute_token_ms']:.4f} ms/token above + {model['draft_ms']:.3f} ms per draft position; "
           f"largest error on the measured points {model['max_error']:.1%}</p>")
    sections = [("Recommendation", decisions), ("Measured", measured), ("Step model", fit)]
    if summary["confirmations"]:
        sections.append(("Confirmation runs", _table(
            ["concurrency", "K", "predicted speedup", "measured", "95 % interval", "recommended"],
            [[str(c["concurrency"]), str(c["draft_length"]), cell(c["predicted_speedup"]), cell(c["measured_speedup"]),
              f"{c['speedup_low']:.2f}–{c['speedup_high']:.2f}", str(c["recommended"]) if c["recommended"] else "off"]
             for c in summary["confirmations"]])))
    return _page("loadgen tune", sections, images, files.html)
