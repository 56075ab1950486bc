"""A benchmark matrix: for each recipe of a plan, start the server, run every workload as a sweep
over the plan's concurrencies (or request rates), stop the server; then compare every recipe
against the plan's baseline, per workload, and draw the recipes' Pareto curves side by side.
A plan with `temperatures: [0, 0.5, 1, 1.5]` and one concurrency (or request rate) sweeps the
sampling temperature at that load instead (points t0/, t0.5/ ...; compared by temperature).

    out/<recipe>/server.log, server.json       the server's log and start-up time
    out/<recipe>/<workload>/sweep.json, c16/    one sweep per workload (each point a whole run)
    out/compare/<workload>/compare.json, .png   every recipe against the baseline
    out/tune/<label>/<workload>/tune.json       a recipe entry's draft_lengths, tuned (loadgen tune's analysis)
    out/matrix.json, matrix.csv, matrix.html    the summary

A recipe entry with `draft_lengths: [0, 1, 2, 4]` becomes one recipe per K, labelled LABEL-kK:
tune's recipe_at, so K is rendered in the engine's own flag and K = 0 is the same recipe with
speculation off. After the matrix, tune's analysis runs over each such entry's sweeps, per
workload (the speedup of every K over K = 0 per concurrency, with its 95 % interval, the best K,
where speculation stops paying).

Resumable: a recipe whose cells all hold finished reports is not started again, and a started
recipe skips its finished points (the sweep's own resume).

A plan is a file, or the name of one: $LOADGEN_PLANS, then the plans shipped inside loadgen
(loadgen/servers/plans, package data beside the recipes), then ./servers/plans.
"""

from __future__ import annotations

import re
import shlex
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import orjson
import yaml
from rich.console import Console

from .. import servers
from ..config import RunConfig, own_server_proxy
from ..engines import DEFAULT_PORTS
from ..errors import LoadgenError, UsageError
from ..layout import MatrixFolder, SweepFolder
from ..servers import Recipe, load_recipe, render
from ..servers.recipe import lookup_dirs, yaml_named
from ..sinks import cell, print_table, write_csv, write_json_atomic
from ..sinks.plots import render_matrix
from .compare import compare
from .serving import ServeSettings, recipe_tokenizer, serving
from .sweep import point_done, run_sweep, temperature_values
from .tune import analyse, recipe_at

__all__ = ["PLAN_KEYS", "SHIPPED_PLANS", "Cell", "Plan", "find_plan", "load_plan", "run_matrix", "shipped_plans"]

#: the plans shipped with loadgen: package data of loadgen.servers, beside the recipes they name
SHIPPED_PLANS = Path(servers.__file__).resolve().parent / "plans"

PLAN_KEYS = ("description", "baseline", "recipes", "workloads", "concurrencies", "request_rates", "run", "serve",
             "output_dir", "temperatures", "repeats")
SERVE_KEYS = ("host", "port", "gpus", "startup_timeout_s", "grace_s")
RECIPE_ENTRY_KEYS = ("recipe", "label", "set", "run", "draft_lengths")
#: folders of the matrix's own beside the recipes' (a recipe may not take their names as labels)
OWN_FOLDERS = ("compare", "tune")
#: run options a plan may not set: the matrix decides them per cell
RESERVED_RUN_KEYS = ("url", "output_dir", "concurrency", "request_rate", "engine", "model")


@dataclass(frozen=True)
class PlannedRecipe:
    label: str
    recipe: Recipe
    run: dict = field(default_factory=dict)
    #: of a recipe entry with draft_lengths: the entry's label and this recipe's K (label LABEL-kK)
    tune_group: str | None = None
    draft_length: int | None = None


@dataclass(frozen=True)
class PlannedWorkload:
    label: str
    run: dict  # at least {"workload": ...}


@dataclass(frozen=True)
class Plan:
    path: Path
    description: str
    recipes: tuple[PlannedRecipe, ...]
    baseline: str  # a recipe label
    workloads: tuple[PlannedWorkload, ...]
    kind: str  # "concurrency", "request_rate" or "temperature"
    values: tuple[float, ...]
    run: dict
    serve: dict
    output_dir: Path
    #: a temperature plan's one load, set in every cell ({"concurrency": 8}); {} for a load sweep
    held_load: dict = field(default_factory=dict)

    def tune_groups(self) -> dict[str, dict[int, PlannedRecipe]]:
        """The recipe entries with draft_lengths: their label -> {K: the recipe at K}."""
        groups: dict[str, dict[int, PlannedRecipe]] = {}
        for item in self.recipes:
            if item.tune_group is not None and item.draft_length is not None:
                groups.setdefault(item.tune_group, {})[item.draft_length] = item
        return groups


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")


def plan_dirs() -> list[Path]:
    return lookup_dirs("LOADGEN_PLANS", SHIPPED_PLANS, Path("servers") / "plans")


def shipped_plans() -> list[str]:
    return sorted(p.stem for p in SHIPPED_PLANS.glob("*.yaml"))


def find_plan(ref: str | Path) -> Path:
    """A plan file: REF itself when it is a file or names one (.yaml), else the first PLAN_DIRS/REF.yaml."""
    path = Path(ref)
    if path.is_file():
        return path
    if path.suffix not in (".yaml", ".yml") and len(path.parts) == 1:
        for folder in plan_dirs():
            found = yaml_named(folder, path.name)
            if found is not None:
                return found
        raise UsageError(f"no plan named {ref} in {', '.join(map(str, plan_dirs()))}: give a plan file, "
                         "or a name that `loadgen matrix --list` prints")
    raise UsageError(f"plan {ref} does not exist: give a plan file, or a name that `loadgen matrix --list` prints")


def load_plan(ref: str | Path, output_dir: Path | None = None) -> Plan:
    """Read and check a plan (a file or a shipped plan's name); every recipe is loaded (and so
    validated) before anything starts."""
    path = find_plan(ref)

    def bad(message: str) -> NoReturn:
        raise UsageError(f"plan {path}: {message}")

    try:
        data = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        raise UsageError(f"plan {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        bad("must be a YAML mapping (recipes, baseline, workloads, concurrencies, run)")
    unknown = sorted(set(data) - set(PLAN_KEYS))
    if unknown:
        bad(f"unknown key {', '.join(unknown)}; known keys: {', '.join(PLAN_KEYS)}")
    run = data.get("run") or {}
    serve = data.get("serve") or {}
    if not isinstance(run, dict) or not isinstance(serve, dict):
        bad("run and serve must be mappings")
    if "repeats" in data:  # the plan's own key: every point of every cell repeated (as run: {repeats: N})
        if "repeats" in run:
            bad("give repeats once: the plan's repeats key or run: {repeats: N}")
        run = {**run, "repeats": data["repeats"]}
    if set(serve) - set(SERVE_KEYS):
        bad(f"serve takes {', '.join(SERVE_KEYS)}")
    recipes: list[PlannedRecipe] = []
    for entry in data.get("recipes") or bad("recipes is required: a list of recipe names or files"):
        if isinstance(entry, str):
            entry = {"recipe": entry}
        if not isinstance(entry, dict) or "recipe" not in entry or set(entry) - set(RECIPE_ENTRY_KEYS):
            bad(f"a recipe entry is a name, or a mapping of {', '.join(RECIPE_ENTRY_KEYS)}; got {entry!r}")
        sets = entry.get("set") or {}
        overrides = [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
                     for k, v in sets.items()] if isinstance(sets, dict) else list(sets)
        ref = _relative(path, entry["recipe"])
        recipe = load_recipe(ref, overrides)
        label = _slug(str(entry.get("label") or recipe.name.replace("/", "-")))
        run_options = dict(entry.get("run") or {})
        if "draft_lengths" not in entry:
            recipes.append(PlannedRecipe(label, recipe, run_options))
            continue
        lengths = _draft_lengths(entry["draft_lengths"])
        if lengths is None:
            bad(f"recipe {label}: draft_lengths takes a list of whole numbers >= 0 with 0 (the baseline, "
                f"speculation off) and at least one K > 0, e.g. [0, 1, 2, 4]; got {entry['draft_lengths']!r}")
        if recipe.speculative.method == "none":
            bad(f"recipe {label}: draft_lengths needs a recipe with a speculative method ({recipe.name} serves "
                "none); K = 0 is that recipe with speculation off")
        for k in lengths:
            try:
                at_k = recipe_at(ref, overrides, k)
                render(at_k, host=serve.get("host", "127.0.0.1"), port=serve.get("port") or DEFAULT_PORTS[at_k.engine],
                       workdir=Path(tempfile.gettempdir()) / "loadgen-matrix-check", gpus=serve.get("gpus"))
            except UsageError as exc:
                bad(f"recipe {label} {exc}" if str(exc).startswith("at draft length") else
                    f"recipe {label} at draft length {k}: {exc}")
            recipes.append(PlannedRecipe(f"{label}-k{k}", at_k, run_options, tune_group=label, draft_length=k))
    labels = [r.label for r in recipes]
    if len(set(labels)) != len(labels):
        bad(f"two recipes share a label ({', '.join(labels)}): give each a label")
    own = sorted(set(labels) & set(OWN_FOLDERS))
    if own:
        bad(f"a recipe may not be labelled {', '.join(own)}: the matrix's own folder of that name lies beside the "
            "recipes'")
    baseline = data.get("baseline")
    # a recipe expanded over draft lengths is named by its LABEL-kK only (its recipe name is every K's)
    by_name = {r.recipe.name: r.label for r in recipes if r.tune_group is None} | {r.label: r.label for r in recipes}
    if baseline is None or str(baseline) not in by_name:
        bad(f"baseline must name one of the plan's recipes ({', '.join(labels)}); got {baseline!r}")
    workloads = []
    for entry in data.get("workloads") or bad("workloads is required, e.g. [speed:qualitative, random]"):
        options: dict[str, Any] | None = ({"workload": entry} if isinstance(entry, str) else
                                          dict(entry) if isinstance(entry, dict) else None)
        if not options or "workload" not in options:
            bad(f"a workload entry is a name, or a mapping with workload (and run options); got {entry!r}")
        label = _slug(str(options.pop("label", None) or options["workload"]))
        workloads.append(PlannedWorkload(label, options))
    if ("concurrencies" in data) == ("request_rates" in data):
        bad("give concurrencies or request_rates (a list of loads), not both")
    kind = "concurrency" if "concurrencies" in data else "request_rate"
    try:
        values = tuple(sorted({(int if kind == "concurrency" else float)(v)
                               for v in data["concurrencies" if kind == "concurrency" else "request_rates"]}))
    except (TypeError, ValueError):
        bad(f"{'concurrencies' if kind == 'concurrency' else 'request_rates'} must be a list of numbers")
    held_load: dict[str, float] = {}
    if "temperatures" in data:
        temperatures = _temperatures(data["temperatures"], kind, values, bad)
        held_load = {kind: values[0]}
        kind, values = "temperature", temperatures
    if kind != "concurrency" and any(r.tune_group for r in recipes):
        bad("draft_lengths needs concurrencies: tune's analysis compares the draft lengths per concurrency")
    reserved_keys = (*RESERVED_RUN_KEYS, "temperature") if kind == "temperature" else RESERVED_RUN_KEYS
    for options in [run, *(w.run for w in workloads), *(r.run for r in recipes)]:
        reserved = sorted(set(options) & set(reserved_keys))
        if reserved:
            bad(f"run options may not set {', '.join(reserved)}: the matrix sets them for each cell")
    out = output_dir or Path(data.get("output_dir") or Path("results") / f"matrix-{path.stem}")
    return Plan(Path(path), str(data.get("description", "")), tuple(recipes), by_name[str(baseline)],
                tuple(workloads), kind, values, dict(run), dict(serve), Path(out), held_load)


def _temperatures(value: Any, load_kind: str, loads: tuple[float, ...], bad: Callable[[str], NoReturn]
                  ) -> tuple[float, ...]:
    """A plan's temperatures, sorted: the axis of every sweep, at the plan's one load."""
    key = "concurrencies" if load_kind == "concurrency" else "request_rates"
    if len(loads) != 1:
        bad(f"temperatures sweeps the temperature at one load: give {key} one value, got "
            f"{', '.join(f'{v:g}' for v in loads)} (sweep loads and temperatures in separate plans)")
    if not isinstance(value, list) or not all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in value):
        bad(f"temperatures must be a list of numbers >= 0, e.g. [0, 0.5, 1, 1.5]; got {value!r}")
    try:
        return temperature_values([float(t) for t in value], "temperatures")
    except UsageError as exc:
        bad(str(exc))


def _draft_lengths(value: Any) -> list[int] | None:
    """A recipe entry's draft_lengths, sorted; None where they are no list of whole numbers >= 0
    holding 0 and at least one K > 0."""
    if not isinstance(value, list) or not all(isinstance(k, int) and not isinstance(k, bool) for k in value):
        return None
    lengths = sorted(set(value))
    return lengths if lengths and lengths[0] == 0 and len(lengths) > 1 else None


def _relative(plan_path: Path, ref: str) -> str:
    """A recipe file named relative to the plan is found from anywhere."""
    candidate = Path(plan_path).parent / ref
    return str(candidate) if ref.endswith((".yaml", ".yml")) and candidate.is_file() else ref


@dataclass(frozen=True)
class Cell:
    recipe: PlannedRecipe
    workload: PlannedWorkload

    def folder(self, plan: Plan) -> SweepFolder:
        return MatrixFolder(plan.output_dir).cell(self.recipe.label, self.workload.label)

    def done(self, plan: Plan) -> bool:
        return all(point_done(self.folder(plan).point(plan.kind, v)) for v in plan.values)


def run_matrix(plan: Plan, make_config: Callable[[dict], RunConfig], console: Console, *,
               dry_run: bool = False) -> dict:
    """Serve and measure every recipe (skipping finished ones), then compare against the baseline.
    make_config turns `loadgen run` options (by their long names) into a RunConfig."""
    out = plan.output_dir
    files = MatrixFolder(out)
    serve = plan.serve
    for item in plan.recipes:  # every cell's options checked before any server starts
        for workload in plan.workloads:
            make_config(_cell_options(plan, item, workload, url="http://127.0.0.1:1", model="check"))
    if dry_run:
        for item in plan.recipes:
            launch = render(item.recipe, host=serve.get("host", "127.0.0.1"),
                            port=serve.get("port") or DEFAULT_PORTS[item.recipe.engine],
                            workdir=files.recipe(item.label), gpus=serve.get("gpus"))
            at_k = "" if item.draft_length is None else f", draft length {item.draft_length}"
            console.print(f"[bold]{item.label}[/] ({item.recipe.name}{at_k}): {shlex.join(launch.argv)}",
                          soft_wrap=True)
            console.print(f"  workloads {', '.join(w.label for w in plan.workloads)} × {plan.kind.replace('_', ' ')} "
                          f"{', '.join(f'{v:g}' for v in plan.values)}{_held(plan)} → {files.recipe(item.label)}")
        for group, members in plan.tune_groups().items():
            console.print(f"[bold]tune {group}[/]: draft lengths {', '.join(map(str, members))} (K = 0 the baseline) "
                          f"per workload → {files.path / 'tune' / group}")
        return {}
    out.mkdir(parents=True, exist_ok=True)
    status: dict[str, dict] = {}
    interrupted = False
    for item in plan.recipes:
        cells = [Cell(item, w) for w in plan.workloads]
        server_file = files.server_info(item.label)
        if all(cell.done(plan) for cell in cells):
            console.print(f"[dim]{item.label}: every cell finished before, kept[/]")
            status[item.label] = {**_read_json(server_file), "status": "kept"}
            continue
        console.rule(f"[bold]{item.label}[/] ({item.recipe.engine} {item.recipe.engine_version})")
        try:
            with serving(item.recipe, ServeSettings(**serve), log_path=files.server_log(item.label),
                         info_path=server_file, label=item.label, console=console) as server:
                info = server.info
                for cell in cells:
                    options = _cell_options(plan, item, cell.workload, url=server.url, model=server.model)
                    sweep = run_sweep(make_config(options), plan.kind, list(plan.values), cell.folder(plan).path,
                                      console)
                    if sweep["interrupted"]:
                        interrupted = True
                        break
            status[item.label] = {**info, "status": "interrupted" if interrupted else "measured"}
        except KeyboardInterrupt:
            interrupted = True
            status[item.label] = {"recipe": item.recipe.name, "status": "interrupted"}
        except LoadgenError as exc:  # one recipe that will not serve does not stop the others
            console.print(f"[bold red]{item.label} failed:[/] {exc}")
            status[item.label] = {"recipe": item.recipe.name, "status": "failed", "error": str(exc).splitlines()[0]}
        if interrupted:
            break
    summary = _summarize(plan, status, console)
    summary["interrupted"] = interrupted
    write_json_atomic(files.summary, summary)
    return summary


def _held(plan: Plan) -> str:
    """A temperature plan's load, as the dry run and the tables say it: " at concurrency 8"."""
    return "".join(f" at {kind.replace('_', ' ')} {value:g}" for kind, value in plan.held_load.items())


def _cell_options(plan: Plan, item: PlannedRecipe, workload: PlannedWorkload, *, url: str, model: str) -> dict:
    """A cell's `loadgen run` options: the plan's, then the workload's, then the recipe's own; no
    proxy unless one of them names one (config.own_server_proxy)."""
    return {"proxy": own_server_proxy(None), **_default_tokenizer(item.recipe, plan), **plan.run, **workload.run,
            **item.run, **plan.held_load, "url": url, "engine": item.recipe.engine, "model": model}


def _default_tokenizer(recipe: Recipe, plan: Plan) -> dict:
    """Token ids from the served model's own tokenizer, unless the plan names one or the engine's
    model is no Hugging Face tokenizer (llama.cpp's GGUF; those plans must name one)."""
    tokenizer = None if "tokenizer" in plan.run else recipe_tokenizer(recipe)
    return {"tokenizer": tokenizer} if tokenizer else {}


def _read_json(path: Path) -> dict:
    try:
        return orjson.loads(path.read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return {}


def _summarize(plan: Plan, status: dict, console: Console) -> dict:
    """Compare every measured recipe with the baseline, workload by workload; table, CSV, pictures."""
    files = MatrixFolder(plan.output_dir)
    rows, comparisons = [], {}
    for workload in plan.workloads:
        sweeps = {r.label: files.cell(r.label, workload.label) for r in plan.recipes
                  if files.cell(r.label, workload.label).summary.exists()}
        for label, folder in sweeps.items():
            points = orjson.loads(folder.summary.read_bytes())["points"]
            for p in points:
                rows.append({"recipe": label, "workload": workload.label, **p})
        others = [folder.path for label, folder in sweeps.items() if label != plan.baseline]
        if plan.baseline in sweeps and others:
            console.rule(f"[bold]{workload.label}[/]: against {plan.baseline}")
            result = compare(others, sweeps[plan.baseline].path, files.compare(workload.label).path, console)
            comparisons[workload.label] = result
            for row in rows:
                run = result["runs"].get(str(files.cell(row["recipe"], workload.label).path))
                point = run["points"].get(f"{row['value']:g}") if run and row["workload"] == workload.label else None
                if point:
                    row.update(output_tps_speedup=point["output_tps_speedup"],
                               user_tps_speedup=point["user_tps_speedup"])
    summary = {"plan": str(plan.path), "description": plan.description, "baseline": plan.baseline,
               "kind": plan.kind, "values": list(plan.values), "held_load": plan.held_load or None,
               "workloads": [w.label for w in plan.workloads],
               "recipes": status, "rows": rows, "compare": comparisons, "tune": _tune(plan, console)}
    write_csv(files.csv, CSV_COLUMNS, rows)
    console.print(f"[dim]matrix: {files.summary} · {render_matrix(summary, files.path)}[/]")
    _print(console, summary)
    return summary


def _tune(plan: Plan, console: Console) -> dict:
    """Tune's analysis over each draft_lengths entry's sweeps, per workload, into tune/LABEL/WORKLOAD/:
    {label: {workload: the decisions, off_from and schedule, or why it was not tuned}}."""
    files = MatrixFolder(plan.output_dir)
    result: dict[str, dict] = {}
    for group, members in plan.tune_groups().items():
        for workload in plan.workloads:
            target = files.tune(group, workload.label)
            unfinished = [item.label for item in members.values()
                          if not Cell(item, workload).done(plan)]
            entry: dict[str, Any] = {"folder": str(target.path), "draft_lengths": list(members),
                                     "recipes": {str(k): item.label for k, item in members.items()}}
            if unfinished:
                entry["error"] = f"not every draft length was measured: {', '.join(unfinished)} unfinished"
                result.setdefault(group, {})[workload.label] = entry
                continue
            options = {**plan.run, **workload.run, **members[0].run}
            console.rule(f"[bold]tune {group}[/] · {workload.label}: draft lengths {', '.join(map(str, members))}")
            try:
                tuned = analyse(target.path, console, plots=not options.get("no_plots"),
                                sweeps={k: files.cell(item.label, workload.label).path for k, item in members.items()},
                                servers={k: files.server_info(item.label) for k, item in members.items()})
            except UsageError as exc:
                entry["error"] = str(exc).splitlines()[0]
            else:
                entry.update(decisions=tuned["decisions"], off_from=tuned["off_from"],
                             schedule=tuned["schedule"]["ranges"])
            result.setdefault(group, {})[workload.label] = entry
    return result


CSV_COLUMNS = ("recipe", "workload", "value", "output_tps", "user_tps_p50", "ttft_p50_s", "tpot_p50_s",
               "acceptance_length", "server_acceptance_length", "failed", "output_tps_speedup", "user_tps_speedup")


def _print(console: Console, summary: dict) -> None:
    for workload in summary["workloads"]:
        print_table(console, f"Matrix · {workload} · speedups against {summary['baseline']}",
                    ("recipe", "temperature" if summary["kind"] == "temperature" else "load", "output TPS",
                     "user TPS p50", "AL", "output TPS ×", "user TPS ×"),
                    ([row["recipe"], f"{row['value']:g}", cell(row["output_tps"], "{:.1f}"),
                      cell(row["user_tps_p50"], "{:.1f}"), cell(row["acceptance_length"]),
                      cell(row.get("output_tps_speedup")), cell(row.get("user_tps_speedup"))]
                     for row in summary["rows"] if row["workload"] == workload), left={"recipe"})
    for group, per_workload in summary.get("tune", {}).items():
        for workload, entry in per_workload.items():
            if "error" in entry:
                console.print(f"[yellow]tune {group} · {workload}: not tuned[/] ({entry['error']})")
                continue
            loads = "; ".join(f"c{d['concurrency']} K={d['recommended']} ({d['recommended_speedup']:.2f}×)"
                              if d["speculation_pays"] else f"c{d['concurrency']} off" for d in entry["decisions"])
            off = f", speculation off from concurrency {entry['off_from']}" if entry["off_from"] is not None else ""
            console.print(f"[bold]tune {group} · {workload}[/]: {loads}{off} → {entry['folder']}")
    for label, info in summary["recipes"].items():
        if info.get("status") == "failed":
            console.print(f"[bold red]{label}: not measured[/] ({info['error']})")
