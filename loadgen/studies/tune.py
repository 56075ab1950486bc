"""Draft-length tuning: which K (num_speculative_tokens, draft_max, ...) to serve at which load, and
from which load to switch speculation off, answered from measured runs and a model fitted to them.

A tune folder holds one sweep per draft length K (`k0/` the baseline, `k3/`, ...), each over the
same concurrencies (`k3/c16/` a whole run). From those runs, per concurrency:

- speedup(K) = mean TPOT without speculation / mean TPOT at K, with a 95 % bootstrap interval
  over the requests of both runs;
- the best K, and whether the runner-up is within noise of it (their intervals overlap): then the
  smaller K of the two is recommended (less verification work for the same speed);
- speculation off (K = 0) where no K's interval lies wholly above 1; `off_from` is the lowest
  concurrency from which that holds at every higher measured one.

The model (analysis/step_model.py) is fitted to the measured iteration times (mean decode step per
run, against the tokens the batch verifies: the requests in flight at its steps times K + 1) and
to the acceptance per draft position (the server's per-position counters, else the client's
conditional acceptance), assuming that the acceptance of a position does not depend on K
(checked where two K measured it). It predicts AL,
TPOT, user and output TPS for the (concurrency, K) points not run, and the oracle's speedup: a
drafter proposing exactly the tokens that will be accepted, under the same step model.

With a recipe (`--recipe`), each K is a real server: the recipe with K in its engine's own flag
(`speculative.num_speculative_tokens`), or for K = 0 the same recipe with speculation off, served
for its sweep (`kK/server.log`, `kK/server.json`) and stopped before the next K starts.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from rich.console import Console

from ..analysis import Report
from ..analysis.bootstrap import ratio_of_means_interval
from ..analysis.step_model import (
    Fit,
    StepModel,
    acceptance_length,
    conditional_from_positions,
    fit,
    oracle_speedup,
    oracle_speedup_at,
    tpot_ms,
)
from ..config import RunConfig, own_server_proxy
from ..engines import DEFAULT_PORTS
from ..engines.deploy import engine_schedules
from ..errors import UsageError
from ..layout import RunFolder, SweepFolder, TuneFolder
from ..records import RequestRecord, read_journal
from ..servers import Recipe, load_recipe, render
from ..sinks import print_table, write_csv, write_json_atomic
from ..sinks.plots import render_tune
from .serving import ServeSettings, recipe_tokenizer, serving
from .sweep import finished_report, run_sweep

__all__ = ["analyse", "recipe_at", "run_tune", "TuneRecipe"]

CSV_COLUMNS = ("concurrency", "draft_length", "measured", "tpot_ms", "speedup", "speedup_low", "speedup_high",
               "acceptance_length", "step_ms", "mean_batch", "predicted_tpot_ms", "predicted_speedup", "rejected_share",
               "oracle_speedup", "best", "recommended")


@dataclasses.dataclass(frozen=True)
class Point:
    """One measured run: its draft length and concurrency, and what tune reads from it."""

    draft_length: int
    concurrency: int
    tpot_s: np.ndarray  # per successful request
    step_ms: float  # mean decode iteration: decode time over decode steps, all requests
    batch: float  # requests in flight at a decode step, on average over the steps (c, less at the run's edges)
    acceptance_length: float | None  # the client's tokens per decode step
    conditional: list[float] | None  # per draft position
    rejected_share: float | None  # drafted tokens the target rejected (server counters)
    #: the client's AL per workload category (tokens per decode step of its successful requests)
    al_by_category: dict[str, float] = dataclasses.field(default_factory=dict)
    #: what was sent: workload, input length and max tokens (runs compared must share it)
    workload: str = ""


@dataclasses.dataclass(frozen=True)
class TuneRecipe:
    """`--recipe` with its `--set` overrides, served at each draft length in place of the emulator."""

    ref: str
    overrides: tuple[str, ...] = ()
    serve: ServeSettings = ServeSettings()


def run_tune(base: RunConfig, draft_lengths: Sequence[int], concurrencies: Sequence[int], out: Path,
             console: Console, recipe: TuneRecipe | None = None, *,
             confirm: Sequence[int] | None = None, deploy_load: tuple[int, int | None] | None = None) -> dict:
    """Sweep the concurrencies once per draft length against the built-in emulator (its --accept cut
    to the first K positions; K = 0 without speculation), or against RECIPE served at each K, then
    analyse. With `confirm` (concurrencies; empty: those the predictions cover between the measured
    ones), run the model's best K and the baseline at each and analyse again: the recommendation
    there is what was measured. A rerun resumes."""
    folder = TuneFolder(out)
    sweep = _served_sweeps(base, recipe, draft_lengths, console) if recipe is not None else \
        _emulator_sweeps(base, draft_lengths, console)
    for k in draft_lengths:
        if not sweep(k, concurrencies, folder.draft_length(k)):
            return {"interrupted": True}
    summary = analyse(out, console, plots=base.plots, deploy_load=deploy_load)
    if confirm is None:
        return summary
    plan = _confirmation_plan(summary, confirm)
    for k in sorted({0, *plan.values()}):
        if not sweep(k, sorted(c for c, best in plan.items() if best == k or k == 0), folder.confirmation(k)):
            return {"interrupted": True}
    return analyse(out, console, plots=base.plots, deploy_load=deploy_load)


#: runs the sweep at draft length K over the concurrencies into a folder; False when interrupted
Sweep = Callable[[int, Sequence[int], Path], bool]


def _emulator_sweeps(base: RunConfig, draft_lengths: Sequence[int], console: Console) -> Sweep:
    """Sweeps against the built-in emulator, its --emulator-accept cut to the first K positions."""
    accept = base.emulator.accept
    if max(draft_lengths) > len(accept):
        raise UsageError(f"--draft-lengths goes up to {max(draft_lengths)} but --emulator-accept gives "
                         f"{len(accept)} positions: give one conditional acceptance per position")

    def sweep(k: int, loads: Sequence[int], where: Path) -> bool:
        console.rule(f"[bold]draft length {k}")
        emulator = dataclasses.replace(base.emulator, accept=accept[:k])
        return not run_sweep(dataclasses.replace(base, emulator=emulator), "concurrency", loads, where,
                             console)["interrupted"]

    return sweep


def _confirmation_plan(summary: dict, confirm: Sequence[int]) -> dict[int, int]:
    """Concurrency -> the drafting K the model predicts best there: run against the baseline, it
    confirms the prediction either way (it pays, or, where the model says no K pays, not even it)."""
    measured = summary["concurrencies"]
    loads = list(confirm) or [c for c in _prediction_grid(measured) if min(measured) < c < max(measured)
                              and c not in measured]
    if not loads:
        raise UsageError("no concurrency to confirm: the predictions between the measured ones are all measured; "
                         "give --confirm-concurrency")
    lengths = range(1, max(summary["draft_lengths"]) + 1)
    return {c: max(lengths, key=lambda k: (_predict_speedup(summary, c, k), -k)) for c in loads}


def _predict_speedup(summary: dict, c: int, k: int) -> float:
    """The fitted model's speedup at (c, K), at any concurrency (not only the prediction grid's)."""
    model = StepModel(**{key: summary["model"][key] for key in ("base_ms", "token_ms", "compute_token_ms",
                                                                "draft_ms")},
                      knee_tokens=summary["model"]["knee_tokens"] or math.inf)
    conditional = summary["acceptance"]["conditional"]
    return tpot_ms(model, conditional, c, 0) / tpot_ms(model, conditional, c, k)


def recipe_at(ref: str, overrides: Sequence[str], k: int) -> Recipe:
    """The recipe at draft length K: K > 0 its speculative method drafting K tokens (each engine
    renders it in its own flag); K = 0 speculation off (method none, no draft model, draft length or
    speculative options), every other field as it is, so that the comparison is fair."""
    draft = ([f"speculative.num_speculative_tokens={k}"] if k else
             ["speculative.method=none", "speculative.draft_model=null", "speculative.num_speculative_tokens=null",
              "speculative.options={}"])
    try:
        return load_recipe(ref, [*overrides, *draft])
    except UsageError as exc:
        raise UsageError(f"at draft length {k}: {exc}") from None


def _served_sweeps(base: RunConfig, source: TuneRecipe, draft_lengths: Sequence[int], console: Console) -> Sweep:
    """Sweeps against the recipe served at each draft length: serve, sweep, stop. Every draft
    length's recipe is loaded and rendered (so checked) before any server starts, and a sweep whose
    points are all finished is not served again."""
    recipe = load_recipe(source.ref, source.overrides)
    if recipe.speculative.method == "none":
        raise UsageError(f"--recipe {recipe.name} serves no speculation (speculative.method none): give a "
                         "recipe with a speculative method; tune serves it without speculation for K = 0")
    if base.engine not in ("auto", recipe.engine):
        raise UsageError(f"--engine {base.engine}: {recipe.name} is a {recipe.engine} recipe (leave --engine out)")
    if base.model is not None:
        raise UsageError("--model: with --recipe tune measures the model the recipe serves (set it with "
                         "--set model=...)")
    serve = source.serve
    for k in draft_lengths:
        try:
            at_k = recipe_at(source.ref, source.overrides, k)
        except UsageError as exc:
            raise UsageError(f"--recipe {exc}") from None
        try:
            render(at_k, host=serve.host,
                   port=serve.port or DEFAULT_PORTS[recipe.engine],
                   workdir=Path(tempfile.gettempdir()) / "loadgen-tune-check", gpus=serve.gpus)
        except UsageError as exc:
            raise UsageError(f"--recipe at draft length {k}: {exc}") from None

    def sweep(k: int, loads: Sequence[int], where: Path) -> bool:
        served = recipe_at(source.ref, source.overrides, k)
        console.rule(f"[bold]draft length {k}[/] ({served.name}, {served.engine} {served.engine_version})")
        points = SweepFolder(where)
        if all(finished_report(points.point("concurrency", c)) for c in loads):
            console.print(f"[dim]draft length {k}: every point finished before, kept (not served again)[/]")
            return True
        try:
            with serving(served, serve, log_path=TuneFolder.server_log(where), info_path=TuneFolder.server_info(where),
                         label=f"draft length {k}", console=console) as server:
                config = dataclasses.replace(base, url=server.url, engine=served.engine, model=server.model,
                                             tokenizer=base.tokenizer or recipe_tokenizer(served),
                                             proxy=own_server_proxy(base.proxy))
                return not run_sweep(config, "concurrency", loads, where, console)["interrupted"]
        except KeyboardInterrupt:  # the server is stopped on leaving the block
            return False

    return sweep


def analyse(out: Path, console: Console, *, plots: bool = True, sweeps: Mapping[int, Path] | None = None,
            servers: Mapping[int, Path] | None = None, deploy_load: tuple[int, int | None] | None = None) -> dict:
    """Read the runs (`cC/`) of one sweep per draft length, write tune.json and tune.csv (and, with
    `plots`, the pictures and tune.html) in `out`, print the table. The sweeps are `out`'s own
    `kK/` folders (a tune folder), or, given `sweeps`, {K: sweep folder} anywhere (a matrix's
    recipe at each K); `servers` {K: server.json} defaults to each sweep's own (`kK/server.json`).
    Confirmation runs are read from `out/confirm/kK/` where there are any. `deploy_load` (lowest,
    highest concurrency; highest None: open-ended) is the load an engine that runs one K is given
    its K for."""
    folder = TuneFolder(out)
    if sweeps is None:
        sweeps = _tune_sweeps(folder)
    points = _read_points(sweeps, where=out)
    lengths = sorted({p.draft_length for p in points})
    if 0 not in lengths:
        raise UsageError(f"{out} has no baseline: tune needs k0/ (draft length 0, no speculation) beside the others")
    if len(lengths) < 2:
        raise UsageError(f"{out} holds one draft length only ({lengths[0]}): tune compares several, give 0 and more")
    by_key = {(p.draft_length, p.concurrency): p for p in points}
    concurrencies = sorted({p.concurrency for p in points})
    missing = [f"{_shown(sweeps[k], out)}/c{c}" for k in lengths for c in concurrencies if (k, c) not in by_key]
    if missing:
        raise UsageError(f"{out}: every draft length needs the same concurrencies; missing {', '.join(missing)}")
    _check_one_workload(points, out)

    model_fit = fit([(p.batch * (p.draft_length + 1), p.draft_length, p.step_ms) for p in points])
    conditional, assumption = _acceptance(points)
    rng = np.random.default_rng(0)
    rows: list[dict] = []
    decisions: list[dict] = []
    for c in concurrencies:
        baseline = by_key[(0, c)]
        cells = []
        for k in lengths:
            point = by_key[(k, c)]
            low, mid, high = _speedup_interval(baseline.tpot_s, point.tpot_s, rng)
            predicted = tpot_ms(model_fit.model, conditional, c, k)
            cells.append({
                "concurrency": c, "draft_length": k, "measured": True,
                "tpot_ms": float(np.mean(point.tpot_s)) * 1e3, "mean_batch": point.batch, "speedup": mid,
                "speedup_low": low,
                "speedup_high": high, "acceptance_length": point.acceptance_length, "step_ms": point.step_ms,
                "predicted_tpot_ms": predicted,
                "predicted_speedup": tpot_ms(model_fit.model, conditional, c, 0) / predicted,
                "rejected_share": point.rejected_share,
                "oracle_speedup": oracle_speedup(model_fit.model, conditional, c, k) if k else None,
                "by_category": _by_category(model_fit, point) if k else {}})
        decisions.append(_decide(c, cells))
        rows += cells
    _mark(rows, decisions)
    confirmations = _confirmations(folder, model_fit, conditional, rng)
    decisions = sorted(decisions + [{"concurrency": c["concurrency"], "best": c["draft_length"],
                                     "best_speedup": c["measured_speedup"], "runner_up": None,
                                     "runner_up_within_noise": False, "recommended": c["recommended"],
                                     "recommended_speedup": c["measured_speedup"] if c["recommended"] else 1.0,
                                     "speculation_pays": bool(c["recommended"]), "confirmation": True}
                                    for c in confirmations if c["concurrency"] not in concurrencies],
                       key=lambda d: d["concurrency"])
    predictions = [_predict(model_fit, conditional, c, k, measured=(k, c) in by_key)
                   for c in _prediction_grid(concurrencies) for k in range(0, max(lengths) + 1)]
    summary: dict[str, Any] = {
        "draft_lengths": lengths, "concurrencies": concurrencies, "rows": rows, "decisions": decisions,
        "off_from": _off_from(decisions), "schedule": _schedule(decisions),
        "model": {**dataclasses.asdict(model_fit.model), "max_error": model_fit.max_error,
                  "points": [{"verified_tokens": v, "draft_length": k, "measured_ms": m, "fitted_ms": f}
                             for v, k, m, f in model_fit.points]},
        "acceptance": {"conditional": conditional, "assumption": assumption},
        "predictions": predictions, "confirmations": confirmations,
        "servers": _servers(servers or {k: TuneFolder.server_info(sweeps[k]) for k in lengths}),
    }
    summary["schedule"]["engines"] = engine_schedules(summary["schedule"], deploy_load)
    out.mkdir(parents=True, exist_ok=True)
    files = {"summary": str(folder.summary), "csv": str(folder.csv)}
    if plots:
        files["html"] = str(render_tune(_finite(summary), out))
    summary["files"] = files
    write_json_atomic(folder.summary, _finite(summary))
    write_csv(folder.csv, CSV_COLUMNS, rows)
    _print(console, summary, model_fit)
    return summary


def _confirmations(folder: TuneFolder, model_fit: Fit, conditional: list[float],
                   rng: np.random.Generator) -> list[dict]:
    """The confirmation runs (confirm/kK/cC/: the model's best K and the baseline at a concurrency
    that had not been measured), each against its prediction. The recommendation there is the
    measured one: the predicted K where its speedup's interval lies above 1, else no speculation."""
    confirm = _tune_sweeps(folder, confirmations=True) if folder.path.is_dir() else {}
    points = {(p.draft_length, p.concurrency): p for p in _read_points(confirm, where=folder.path, confirmations=True)}
    out = []
    for (k, c), point in sorted(points.items()):
        baseline = points.get((0, c))
        if not k or baseline is None:
            continue  # a baseline is what its K is measured against
        low, mid, high = _speedup_interval(baseline.tpot_s, point.tpot_s, rng)
        predicted = tpot_ms(model_fit.model, conditional, c, 0) / tpot_ms(model_fit.model, conditional, c, k)
        out.append({"concurrency": c, "draft_length": k, "predicted_speedup": predicted, "measured_speedup": mid,
                    "speedup_low": low, "speedup_high": high,
                    "recommended": k if low > 1 else 0})
    return out


def _by_category(model_fit: Fit, point: Point) -> dict[str, dict]:
    """Per workload category at a drafting point: its client AL, the share of its drafted tokens
    rejected (from that AL: each step drafted K and kept AL - 1, so 1 - (AL - 1) / K; exact where
    every decode step drafts) and the oracle's speedup at that AL under the fitted model."""
    k = point.draft_length
    return {category: {"acceptance_length": al, "rejected_share": max(0.0, 1 - (al - 1) / k),
                       "oracle_speedup": oracle_speedup_at(model_fit.model, al, point.concurrency)}
            for category, al in sorted(point.al_by_category.items())}


def _predict(model_fit: Fit, conditional: list[float], c: int, k: int, *, measured: bool) -> dict:
    """The model's figures at (concurrency, K): closed loop, every request always running."""
    model = model_fit.model
    tpot = tpot_ms(model, conditional, c, k)
    return {"concurrency": c, "draft_length": k, "measured": measured,
            "acceptance_length": acceptance_length(conditional, k), "tpot_ms": tpot, "user_tps": 1e3 / tpot,
            "output_tps": c * 1e3 / tpot, "speedup": tpot_ms(model, conditional, c, 0) / tpot,
            "oracle_speedup": oracle_speedup(model, conditional, c, k) if k else None}


def _shown(path: Path, out: Path) -> str:
    """A sweep's folder as the user knows it: kK where it lies in the tune folder, else whole."""
    return str(path.relative_to(out)) if path.is_relative_to(out) else str(path)


def _servers(infos: Mapping[int, Path]) -> dict[str, dict]:
    """With a recipe served: each draft length's server.json (its command, model, start-up time)."""
    servers = {}
    for k, path in sorted(infos.items()):
        try:
            servers[str(k)] = orjson.loads(path.read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            continue
    return servers


def _check_one_workload(points: Sequence[Point], out: Path) -> None:
    """Draft lengths are compared on the same prompts: runs that sent another workload, input length
    or max_tokens are refused."""
    seen: dict[str, Point] = {}
    for p in points:
        seen.setdefault(p.workload, p)
    if len(seen) > 1:
        (a, first), (b, other) = list(seen.items())[:2]
        raise UsageError(f"{out}: the runs do not share a workload ({a} at K={first.draft_length} "
                         f"c={first.concurrency}, {b} at K={other.draft_length} c={other.concurrency}): tune compares "
                         "draft lengths on the same prompts, input lengths and max_tokens")


def _tune_sweeps(folder: TuneFolder, *, confirmations: bool = False) -> dict[int, Path]:
    """A tune folder's sweeps {K: kK/} (or its confirmations' {K: confirm/kK/}, maybe none)."""
    if not folder.path.is_dir():
        raise UsageError(f"{folder.path} is no folder: give a tune folder (kK/cC/ runs)")
    root = folder.confirmation(0).parent if confirmations else folder.path
    return {int(k_dir.name[1:]): k_dir for k_dir in sorted(root.glob("k*"))
            if k_dir.is_dir() and k_dir.name[1:].isdigit()}


def _read_points(sweeps: Mapping[int, Path], *, where: Path, confirmations: bool = False) -> list[Point]:
    """The runs (cC/) of every sweep {K: folder}: the study's, or its confirmations' (maybe none)."""
    points = []
    for k, sweep in sorted(sweeps.items()):
        for c_dir in sorted(sweep.glob("c*")):
            if c_dir.is_dir() and c_dir.name[1:].isdigit():
                points.append(_read_point(k, int(c_dir.name[1:]), RunFolder(c_dir)))
    if not points and not confirmations:
        raise UsageError(f"{where} holds no runs: a tune folder has kK/cC/ run folders "
                         "(loadgen tune writes them)")
    return points


def _read_point(k: int, c: int, run: RunFolder) -> Point:
    report = finished_report(run)
    if report is None:
        raise UsageError(f"{run.path} has no finished report: rerun `loadgen tune` with the same options to finish it")
    records = [r for r in read_journal(run.journal) if r.ok and not r.warmup and len(r.chunk_ns) > 1]
    if not records:
        raise UsageError(f"{run.path}: no successful request of two or more steps to time")
    tpot = np.array([(r.last_ns - r.first_ns) / (r.output_tokens - 1) * 1e-9 for r in records if r.output_tokens > 1])
    decode_ns = sum(r.chunk_ns[-1] - r.chunk_ns[0] for r in records)
    steps = sum(len(r.chunk_ns) - 1 for r in records)
    return Point(k, c, tpot, decode_ns / steps * 1e-6, _mean_batch(records),
                 report.speculative.client.acceptance_length, _conditional(report) if k else None,
                 _rejected_share(report) if k else None, dict(report.speculative.client.by_category),
                 _workload(report))


def _workload(report: Report) -> str:
    """The prompts a run sent, as far as a fair comparison needs them alike."""
    config = report.config
    length = f", isl {config.isl}" if config.isl else (f", input {config.input_len}" if config.input_len else "")
    return f"{config.workload}{length}, max_tokens {config.max_tokens}"


def _mean_batch(records: Sequence[RequestRecord]) -> float:
    """How many requests were in flight (sent, not yet finished) as each decode step began (at the
    chunk before it: an iteration's batch is set when it starts), averaged over the steps: what the
    iterations' measured time was paid for. A closed loop holds c, but as its
    last requests finish (and between one request's end and the next one's send) fewer run, and
    fitting those cheaper steps to c would read the knee too late."""
    starts = np.sort(np.array([r.sent_ns for r in records]))
    ends = np.sort(np.array([r.last_ns for r in records]))
    times = np.concatenate([np.asarray(r.chunk_ns[:-1]) for r in records])  # each decode step's start
    in_flight = np.searchsorted(starts, times, side="right") - np.searchsorted(ends, times, side="left")
    return float(np.mean(in_flight))


def _conditional(report: Report) -> list[float] | None:
    """Conditional acceptance per draft position: the server's per-position counters, else the client's."""
    server = report.speculative.server
    if server is not None and server.per_position:
        return conditional_from_positions(server.per_position)
    client = report.speculative.client.conditional_acceptance  # {"2": P(>= 2 tokens | >= 1), ...}
    return [client[key] for key in sorted(client, key=int) if int(key) >= 2] or None


def _rejected_share(report: Report) -> float | None:
    server = report.speculative.server
    if server is None or not server.draft_tokens or server.accepted_tokens is None:
        return None
    return 1 - server.accepted_tokens / server.draft_tokens


def _acceptance(points: Sequence[Point]) -> tuple[list[float], dict]:
    """The conditional acceptance per position, averaged over every run that measured the position;
    and the check of the assumption that it does not depend on K: the largest difference of a
    position's mean between two draft lengths."""
    per_k: dict[int, list[list[float]]] = {}
    for p in points:
        if p.conditional:
            per_k.setdefault(p.draft_length, []).append(p.conditional)
    means = {k: [float(np.mean(col)) for col in zip(*rows, strict=False)] for k, rows in per_k.items()}
    width = max((len(m) for m in means.values()), default=0)
    conditional = [float(np.mean([m[i] for m in means.values() if len(m) > i])) for i in range(width)]
    differences = [abs(a[i] - b[i]) for ka, a in means.items() for kb, b in means.items() if ka < kb
                   for i in range(min(len(a), len(b)))]
    assumption = {"per_draft_length": {str(k): m for k, m in sorted(means.items())},
                  "max_difference": max(differences) if differences else None,
                  "checked": bool(differences)}
    return conditional, assumption


def _speedup_interval(base: np.ndarray, other: np.ndarray, rng: np.random.Generator) -> tuple[float, float, float]:
    """Mean-TPOT ratio and its 95 % percentile-bootstrap interval (requests resampled in both runs)."""
    interval = ratio_of_means_interval(base, other, rng)
    return interval.low, interval.value, interval.high


def _decide(c: int, cells: list[dict]) -> dict:
    """The best K at this concurrency, the runner-up, and the recommendation."""
    spec = sorted((x for x in cells if x["draft_length"]), key=lambda x: -x["speedup"])
    best = spec[0]
    runner_up = spec[1] if len(spec) > 1 else None
    within_noise = runner_up is not None and runner_up["speedup_high"] >= best["speedup_low"]
    recommended = best
    if within_noise and runner_up is not None and runner_up["draft_length"] < best["draft_length"]:
        recommended = runner_up
    pays = recommended["speedup_low"] > 1
    return {"concurrency": c, "best": best["draft_length"], "best_speedup": best["speedup"],
            "runner_up": runner_up["draft_length"] if runner_up else None, "runner_up_within_noise": within_noise,
            "recommended": recommended["draft_length"] if pays else 0,
            "recommended_speedup": recommended["speedup"] if pays else 1.0, "speculation_pays": pays}


def _mark(rows: list[dict], decisions: list[dict]) -> None:
    chosen = {d["concurrency"]: d for d in decisions}
    for row in rows:
        decision = chosen[row["concurrency"]]
        row["best"] = row["draft_length"] == decision["best"]
        row["recommended"] = row["draft_length"] == decision["recommended"]


def _off_from(decisions: list[dict]) -> int | None:
    """The lowest concurrency from which speculation pays at no higher measured one."""
    off = None
    for d in reversed(decisions):
        if d["speculation_pays"]:
            break
        off = d["concurrency"]
    return off


def _schedule(decisions: list[dict]) -> dict:
    """The recommendation as ranges of concurrency -> draft length (0: speculation off), each range
    from a measured concurrency up to the next one's (the last open-ended)."""
    ranges: list[dict] = []
    for i, d in enumerate(decisions):
        upper = decisions[i + 1]["concurrency"] - 1 if i + 1 < len(decisions) else None
        if ranges and ranges[-1]["draft_length"] == d["recommended"]:
            ranges[-1]["to"] = upper
        else:
            ranges.append({"from": d["concurrency"], "to": upper, "draft_length": d["recommended"]})
    return {"ranges": ranges, "off_from": _off_from(decisions),
            "note": "measured points only: between them the recommendation is that of the range's lower end"}


def _prediction_grid(concurrencies: Sequence[int]) -> list[int]:
    """The measured concurrencies and the powers of two between the lowest and twice the highest."""
    low, high = min(concurrencies), 2 * max(concurrencies)
    powers = [2 ** i for i in range(int(math.log2(high)) + 1) if low <= 2 ** i <= high]
    return sorted({*concurrencies, *powers})


def _finite(value):
    """JSON has no infinity: a knee at infinity (none found) is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _print(console: Console, summary: dict, model_fit: Fit) -> None:
    lengths = summary["draft_lengths"]
    by = {(r["concurrency"], r["draft_length"]): r for r in summary["rows"]}
    rows = []
    for c in summary["concurrencies"]:
        decision = next(d for d in summary["decisions"] if d["concurrency"] == c)
        cells = [str(c)]
        for k in lengths[1:]:
            r = by[(c, k)]
            mark = " *" if r["recommended"] else ("  " if not r["best"] else " b")
            cells.append(f"{r['speedup']:.2f} [{r['speedup_low']:.2f}, {r['speedup_high']:.2f}]{mark}")
        cells.append(str(decision["recommended"]) if decision["speculation_pays"] else "off")
        rows.append(cells)
    print_table(console, "Speedup of TPOT over no speculation, 95 % interval (* recommended; b the best measured, "
                         "where a smaller K within noise or no speculation is recommended)",
                ["concurrency", *(f"K={k}" for k in lengths[1:]), "deploy"], rows)
    if summary["confirmations"]:
        print_table(console, "Confirmation: the model's best K at loads not measured, run against the baseline",
                    ["concurrency", "K", "predicted speedup", "measured", "95 % interval", "deploy"],
                    [[str(c["concurrency"]), str(c["draft_length"]), f"{c['predicted_speedup']:.2f}",
                      f"{c['measured_speedup']:.2f}", f"[{c['speedup_low']:.2f}, {c['speedup_high']:.2f}]",
                      str(c["recommended"]) if c["recommended"] else "off"] for c in summary["confirmations"]])
    model = model_fit.model
    knee = "none" if not math.isfinite(model.knee_tokens) else f"{model.knee_tokens:.1f} tokens"
    console.print(f"Step model: {model.base_ms:.2f} ms + {model.token_ms:.4f} ms/token below the knee ({knee}) "
                  f"+ {model.compute_token_ms:.4f} ms/token above + {model.draft_ms:.3f} ms per draft position; "
                  f"fits the {len(model_fit.points)} measured points within {model_fit.max_error:.1%}")
    assumption = summary["acceptance"]["assumption"]
    if assumption["checked"]:
        console.print(f"Acceptance per position differs by at most {assumption['max_difference']:.3f} between draft "
                      f"lengths (the model assumes it does not depend on K)")
    if summary["off_from"] is not None:
        console.print(f"[bold]Speculation stops paying from concurrency {summary['off_from']}[/]")
    console.print(f"[dim]tune: {', '.join(summary['files'].values())}[/]")
