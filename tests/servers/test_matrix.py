"""`loadgen matrix` against fake engine launchers (each starts the emulator with its engine's
personality): serve -> sweep each workload -> stop, per recipe; compare with the baseline; resume."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from loadgen.errors import UsageError
from loadgen.servers.process import group_alive
from loadgen.studies.matrix import SHIPPED_PLANS, find_plan, shipped_plans

from .conftest import dedent

RUN = "{num_requests: 16, max_tokens: 64, no_progress: true, no_metrics: true, no_plots: true}"


def _plan(tmp_path: Path, fake_engines, *, recipes: str, baseline: str = "none", run: str = RUN,
          extra: str = "") -> Path:
    fake_engines.recipe("none", method="none")
    fake_engines.recipe("eagle3")
    fake_engines.recipe("sg-eagle3", engine="sglang")
    fake_engines.recipe("crashy", env="{FAKE_ENGINE_MODE: crash}")
    plan = tmp_path / "plan.yaml"
    plan.write_text(dedent(f"""
        description: fake engines, none against eagle3
        baseline: {baseline}
        recipes: {recipes}
        workloads: [random]
        concurrencies: [1, 4]
        run: {run}
        output_dir: {tmp_path / 'matrix'}
        serve: {{port: 0}}
        {extra}"""))
    return plan


def _matrix(plan: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loadgen", "matrix", str(plan), *args], capture_output=True,
                          text=True, timeout=timeout, cwd=plan.parent)


def _summary(tmp_path: Path) -> dict:
    return orjson.loads((tmp_path / "matrix" / "matrix.json").read_bytes())


def test_matrix_measures_every_recipe_compares_with_the_baseline_and_resumes(fake_engines, tmp_path):
    plan = _plan(tmp_path, fake_engines, recipes="[recipes/none.yaml, recipes/eagle3.yaml, recipes/sg-eagle3.yaml]")
    out = _matrix(plan)
    assert out.returncode == 0, out.stdout + out.stderr
    starts = fake_engines.starts()
    assert [s["engine"] for s in starts] == ["vllm", "vllm", "sglang"]  # one server per recipe, in plan order
    assert all(not group_alive(s["pid"]) for s in starts)  # each stopped before the next started
    summary = _summary(tmp_path)
    assert {label: info["status"] for label, info in summary["recipes"].items()} == {
        "none": "measured", "eagle3": "measured", "sg-eagle3": "measured"}
    assert all(info["startup_s"] > 0 for info in summary["recipes"].values())
    rows = {(r["recipe"], r["value"]): r for r in summary["rows"]}
    assert sorted(rows) == [(label, v) for label in ("eagle3", "none", "sg-eagle3") for v in (1, 4)]
    assert all(r["failed"] == 0 and r["requests"] == 16 for r in rows.values())
    # Speculation in the emulator makes each step carry AL tokens at the same step time: the
    # speedup in time per output token is the acceptance length (1 + 0.8 + 0.48 + 0.19 = 2.47).
    result = summary["compare"]["random"]
    for label in ("eagle3", "sg-eagle3"):
        points = result["runs"][str(tmp_path / "matrix" / label / "random")]["points"]
        for point in points.values():
            assert point["tpot_speedup"] == pytest.approx(point["acceptance_length"], rel=0.15)
            assert 2.0 < point["acceptance_length"] < 2.6
        assert rows[(label, 1)]["output_tps_speedup"] > 1.5
    assert rows[("none", 1)]["acceptance_length"] == pytest.approx(1.0)
    for name in ("matrix.csv", "matrix.html", "pareto-random.png", "compare/random/compare.json"):
        assert (tmp_path / "matrix" / name).is_file(), name
    assert len((tmp_path / "matrix" / "matrix.csv").read_text().strip().splitlines()) == 1 + 6

    # Rerun: every cell finished, so no server starts at all.
    again = _matrix(plan)
    assert again.returncode == 0, again.stderr
    assert len(fake_engines.starts()) == 3
    assert {info["status"] for info in _summary(tmp_path)["recipes"].values()} == {"kept"}

    # One point lost: only its recipe is served again, and only that point runs.
    kept = tmp_path / "matrix" / "eagle3" / "random" / "c1" / "report.json"
    kept_mtime = kept.stat().st_mtime_ns
    (tmp_path / "matrix" / "eagle3" / "random" / "c4" / "report.json").unlink()
    third = _matrix(plan)
    assert third.returncode == 0, third.stderr
    assert len(fake_engines.starts()) == 4 and fake_engines.starts()[-1]["engine"] == "vllm"
    assert kept.stat().st_mtime_ns == kept_mtime
    statuses = {label: info["status"] for label, info in _summary(tmp_path)["recipes"].items()}
    assert statuses == {"none": "kept", "eagle3": "measured", "sg-eagle3": "kept"}


def test_a_recipe_that_will_not_serve_fails_alone(fake_engines, tmp_path):
    plan = _plan(tmp_path, fake_engines, recipes="[recipes/none.yaml, recipes/crashy.yaml, recipes/eagle3.yaml]",
                 run="{num_requests: 8, max_tokens: 16, no_progress: true, no_metrics: true, no_plots: true}")
    out = _matrix(plan)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("error: 1 recipe(s) failed: crashy")
    assert "Traceback" not in out.stderr
    summary = _summary(tmp_path)
    assert summary["recipes"]["crashy"]["status"] == "failed"
    assert "exited with status 1 during start-up" in summary["recipes"]["crashy"]["error"]
    assert summary["recipes"]["eagle3"]["status"] == "measured"
    assert "CUDA out of memory" in (tmp_path / "matrix" / "crashy" / "server.log").read_text()


def test_interrupting_a_matrix_stops_its_server(fake_engines, tmp_path):
    plan = _plan(tmp_path, fake_engines, recipes="[recipes/none.yaml, recipes/eagle3.yaml]",
                 run="{num_requests: 100000, max_tokens: 64, no_progress: true, no_metrics: true, no_plots: true}")
    proc = subprocess.Popen([sys.executable, "-m", "loadgen", "matrix", str(plan)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    journal = tmp_path / "matrix" / "none" / "random" / "c1" / "requests.jsonl"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (journal.exists() and journal.stat().st_size > 0):
            time.sleep(0.1)
        assert journal.exists(), "the first cell never started"
    finally:
        proc.send_signal(signal.SIGINT)  # also when the test fails: the matrix stops its server
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    [start] = fake_engines.starts()
    assert not group_alive(start["pid"])
    summary = _summary(tmp_path)
    assert summary["interrupted"] and summary["recipes"]["none"]["status"] == "interrupted"
    assert orjson.loads((journal.parent / "report.json").read_bytes())["partial"]


def test_matrix_over_request_rates_with_per_recipe_run_options(fake_engines, tmp_path):
    plan = _plan(tmp_path, fake_engines, recipes="[recipes/none.yaml, {recipe: recipes/eagle3.yaml, "
                                                  "run: {max_tokens: 24}}]")
    plan.write_text(plan.read_text().replace("concurrencies: [1, 4]", "request_rates: [40]"))
    out = _matrix(plan)
    assert out.returncode == 0, out.stdout + out.stderr
    summary = _summary(tmp_path)
    assert summary["kind"] == "request_rate" and summary["values"] == [40.0]
    report = orjson.loads((tmp_path / "matrix" / "eagle3" / "random" / "r40" / "report.json").read_bytes())
    assert report["config"]["request_rate"] == 40 and report["config"]["max_tokens"] == 24
    assert report["summary"]["output_tokens"] == 16 * 24
    assert summary["compare"]["random"]["runs"][str(tmp_path / "matrix" / "eagle3" / "random")]["points"]["40"]


@pytest.mark.parametrize("extra, recipes, baseline, message", [
    ("colour: blue", "[recipes/none.yaml]", "none", "unknown key colour"),
    ("", "[recipes/none.yaml]", "other", "baseline must name one of the plan's recipes (none)"),
    ("request_rates: [1]", "[recipes/none.yaml]", "none", "give concurrencies or request_rates"),
    ("", "[recipes/none.yaml, {recipe: recipes/none.yaml}]", "none", "two recipes share a label"),
    ("", "[recipes/missing.yaml]", "none", "recipe recipes/missing.yaml does not exist"),
])
def test_bad_plans_are_one_line_before_anything_starts(fake_engines, tmp_path, extra, recipes, baseline, message):
    plan = _plan(tmp_path, fake_engines, recipes=recipes, baseline=baseline, extra=extra)
    out = _matrix(plan)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and message in out.stderr, out.stderr
    assert fake_engines.starts() == []


@pytest.mark.parametrize("run, message", [
    ("{concurrency: 8}", "run options may not set concurrency"),
    ("{num_requestz: 8}", "--num-requestz"),
])
def test_bad_run_options_are_one_line(fake_engines, tmp_path, run, message):
    plan = _plan(tmp_path, fake_engines, recipes="[recipes/none.yaml]", run=run)
    out = _matrix(plan)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and message in out.stderr, out.stderr
    assert fake_engines.starts() == []


def test_dry_run_prints_every_recipe_and_its_cells(fake_engines, tmp_path):
    plan = _plan(tmp_path, fake_engines, recipes="[recipes/none.yaml, {recipe: recipes/eagle3.yaml, label: e5, "
                                                  "set: {speculative.num_speculative_tokens: 5}}]")
    out = _matrix(plan, "--dry-run")
    assert out.returncode == 0, out.stderr
    assert '"num_speculative_tokens":5' in out.stdout and "e5 (eagle3)" in out.stdout
    assert "workloads random × concurrency 1, 4" in out.stdout
    assert fake_engines.starts() == [] and not (tmp_path / "matrix").exists()


@pytest.mark.parametrize("plan", sorted(SHIPPED_PLANS.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_plans_are_valid(plan, tmp_path):
    out = subprocess.run([sys.executable, "-m", "loadgen", "matrix", str(plan), "--dry-run", "--output-dir",
                          str(tmp_path / "m")], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    from loadgen.studies.matrix import load_plan

    loaded = load_plan(plan)
    assert loaded.baseline in {r.label for r in loaded.recipes}
    for item in loaded.recipes:
        assert f"{item.label} ({item.recipe.name})" in out.stdout


def test_plans_are_found_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "llama3.1-8b-vllm-methods" in shipped_plans()
    assert find_plan("llama3.1-8b-vllm-methods") == SHIPPED_PLANS / "llama3.1-8b-vllm-methods.yaml"
    with pytest.raises(UsageError, match=r"no plan named nope in .*: give a plan file, or a name that"):
        find_plan("nope")
    with pytest.raises(UsageError, match=r"plan elsewhere/nope.yaml does not exist"):
        find_plan("elsewhere/nope.yaml")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "llama3.1-8b-vllm-methods.yaml").write_text("recipes: []\n")
    monkeypatch.setenv("LOADGEN_PLANS", str(tmp_path / "mine"))
    assert find_plan("llama3.1-8b-vllm-methods") == tmp_path / "mine" / "llama3.1-8b-vllm-methods.yaml"


def test_matrix_over_temperatures_compares_by_temperature(fake_engines, tmp_path):
    plan = _plan(tmp_path, fake_engines, recipes="[recipes/none.yaml, recipes/eagle3.yaml]",
                 run="{num_requests: 16, max_tokens: 32, no_progress: true, no_metrics: true, no_plots: true}")
    plan.write_text(plan.read_text().replace("concurrencies: [1, 4]", "concurrencies: [4]\ntemperatures: [1.5, 0]"))
    out = _matrix(plan)
    assert out.returncode == 0, out.stdout + out.stderr
    summary = _summary(tmp_path)
    assert summary["kind"] == "temperature" and summary["values"] == [0, 1.5]
    assert summary["held_load"] == {"concurrency": 4}
    report = orjson.loads((tmp_path / "matrix" / "eagle3" / "random" / "t1.5" / "report.json").read_bytes())
    assert report["config"]["temperature"] == 1.5 and report["config"]["concurrency"] == 4
    result = summary["compare"]["random"]
    points = result["runs"][str(tmp_path / "matrix" / "eagle3" / "random")]["points"]
    assert result["axis"] == "temperature" and list(points) == ["0", "1.5"]
    # the emulator's acceptance times max(0, 1 - 0.35 T): AL 2.47 at T 0, 1.51 at 1.5 (16 short requests)
    assert points["0"]["acceptance_length"] > points["1.5"]["acceptance_length"] + 0.5
    assert points["0"]["tpot_speedup"] > points["1.5"]["tpot_speedup"]
    assert (tmp_path / "matrix" / "compare" / "random" / "temperature.png").is_file()


@pytest.mark.parametrize("loads, temperatures, run, message", [
    ("concurrencies: [1, 4]", "[0, 1]", RUN, "temperatures sweeps the temperature at one load: give concurrencies "
                                             "one value, got 1, 4"),
    ("request_rates: [2]", "[0, -1]", RUN, "temperatures takes temperatures >= 0, got -1"),
    ("concurrencies: [4]", "[0, 1, 0]", RUN, "temperatures names temperature 0 twice"),
    ("concurrencies: [4]", "hot", RUN, "temperatures must be a list of numbers >= 0"),
    ("concurrencies: [4]", "[0, 1]", "{temperature: 0.7}", "run options may not set temperature"),
])
def test_bad_temperature_plans_are_one_line(fake_engines, tmp_path, loads, temperatures, run, message):
    from loadgen.studies.matrix import load_plan

    plan = _plan(tmp_path, fake_engines, recipes="[recipes/none.yaml]", run=run)
    plan.write_text(plan.read_text().replace("concurrencies: [1, 4]", f"{loads}\ntemperatures: {temperatures}"))
    with pytest.raises(UsageError) as refused:
        load_plan(plan)
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_a_temperature_plan_holds_its_one_load_in_every_cell(fake_engines, tmp_path):
    from loadgen.studies.matrix import _cell_options, load_plan

    plan = _plan(tmp_path, fake_engines, recipes="[recipes/none.yaml]")
    plan.write_text(plan.read_text().replace("concurrencies: [1, 4]", "request_rates: [2.5]\ntemperatures: [1, 0.5]"))
    loaded = load_plan(plan)
    assert (loaded.kind, loaded.values, loaded.held_load) == ("temperature", (0.5, 1.0), {"request_rate": 2.5})
    options = _cell_options(loaded, loaded.recipes[0], loaded.workloads[0], url="http://127.0.0.1:1", model="m")
    assert options["request_rate"] == 2.5 and "temperature" not in options
    out = _matrix(plan, "--dry-run")
    assert out.returncode == 0 and "workloads random × temperature 0.5, 1 at request rate 2.5" in out.stdout


def test_a_plans_repeats_key_reaches_every_sweep(fake_engines, tmp_path):
    from loadgen.studies.matrix import load_plan

    plan = _plan(tmp_path, fake_engines, recipes="[recipes/none.yaml]", extra="repeats: 2")
    assert load_plan(plan).run["repeats"] == 2  # as run: {repeats: 2} would give it
    both = _plan(tmp_path, fake_engines, recipes="[recipes/none.yaml]", run="{repeats: 3}", extra="repeats: 2")
    with pytest.raises(UsageError, match="give repeats once"):
        load_plan(both)
