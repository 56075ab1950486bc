"""Draft length as an axis of `loadgen matrix`: a recipe entry's `draft_lengths` expands into one
recipe per K (LABEL-kK, K in the engine's own flag, K = 0 speculation off), and tune's analysis runs
over each entry's sweeps per workload (tune/LABEL/WORKLOAD/). Against the fake vLLM, which serves
the emulator with its acceptance (fakes/fake_engine.py ACCEPT) cut to the draft length it was given
and a fixed step time: the TPOT speedup at K is the acceptance length 1 + p1 + p1·p2 + ..."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from loadgen.servers.process import group_alive

from .argv import draft_length, without
from .conftest import dedent
from .fakes.fake_engine import ACCEPT

RUN = "{num_requests: 12, max_tokens: 32, no_progress: true, no_metrics: true, no_plots: true}"
WORKLOADS = "[{workload: random, label: short, input_len: 16}, {workload: random, label: long, input_len: 64}]"


def _plan(tmp_path: Path, fake_engines, *, recipes: str, baseline: str = "eagle3-k0", extra: str = "",
          loads: str = "concurrencies: [1, 4]") -> Path:
    fake_engines.recipe("none", method="none")
    fake_engines.recipe("eagle3")
    plan = tmp_path / "plan.yaml"
    plan.write_text(dedent(f"""
        description: fake vLLM, eagle3 at several draft lengths
        baseline: {baseline}
        recipes: {recipes}
        workloads: {WORKLOADS}
        {loads}
        run: {RUN}
        output_dir: {tmp_path / 'matrix'}
        serve: {{port: 0}}
        {extra}"""))
    return plan


def _matrix(plan: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loadgen", "matrix", str(plan), *args], capture_output=True,
                          text=True, timeout=300, cwd=plan.parent)


def _al(k: int) -> float:
    """The emulated acceptance length at K: 1 + p1 + p1·p2 + ... (conditional rates)."""
    total, reach = 1.0, 1.0
    for p in ACCEPT[:k]:
        reach *= p
        total += reach
    return total


def test_draft_lengths_expand_into_recipes_tuned_per_workload_and_resume(fake_engines, tmp_path):
    plan = _plan(tmp_path, fake_engines, recipes="[{recipe: recipes/eagle3.yaml, label: eagle3, "
                                                  "draft_lengths: [0, 1, 3]}]")
    out = _matrix(plan)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    starts = fake_engines.starts()
    assert [draft_length(s["argv"]) for s in starts] == [0, 1, 3]  # K in vLLM's own flag
    assert all(not group_alive(s["pid"]) for s in starts)
    spec = json.loads(starts[2]["argv"][starts[2]["argv"].index("--speculative-config") + 1])
    assert spec == {"method": "eagle3", "num_speculative_tokens": 3, "model": "test/draft"}
    # K = 0 has no speculative config at all; all else is the same command (but the free port)
    same = [without(s["argv"], {"--speculative-config", "--port"}) for s in starts]
    assert same[0] == same[1] == same[2]

    matrix = tmp_path / "matrix"
    summary = orjson.loads((matrix / "matrix.json").read_bytes())
    assert summary["baseline"] == "eagle3-k0"
    assert {label: info["status"] for label, info in summary["recipes"].items()} == {
        "eagle3-k0": "measured", "eagle3-k1": "measured", "eagle3-k3": "measured"}
    assert set(summary["tune"]) == {"eagle3"} and set(summary["tune"]["eagle3"]) == {"short", "long"}
    for workload in ("short", "long"):
        entry = summary["tune"]["eagle3"][workload]
        folder = matrix / "tune" / "eagle3" / workload
        assert entry["folder"] == str(folder) and entry["draft_lengths"] == [0, 1, 3]
        assert (folder / "tune.csv").is_file() and not (folder / "heatmap.png").exists()  # no_plots
        tuned = orjson.loads((folder / "tune.json").read_bytes())
        assert tuned["draft_lengths"] == [0, 1, 3] and tuned["concurrencies"] == [1, 4]
        assert tuned["decisions"] == entry["decisions"] and entry["off_from"] is None
        assert tuned["servers"]["3"] == orjson.loads((matrix / "eagle3-k3" / "server.json").read_bytes())
        rows = {(r["concurrency"], r["draft_length"]): r for r in tuned["rows"]}
        for c in (1, 4):
            # the emulator's step time does not depend on K: the speedup is the acceptance length,
            # the run's own, and the emulated one within sampling (12 requests of 32 tokens)
            for k in (1, 3):
                assert rows[(c, k)]["speedup"] == pytest.approx(rows[(c, k)]["acceptance_length"], rel=0.05)
                assert rows[(c, k)]["speedup"] == pytest.approx(_al(k), rel=0.15), (workload, c, k)
                assert rows[(c, k)]["speedup_low"] <= rows[(c, k)]["speedup"] <= rows[(c, k)]["speedup_high"]
            decision = next(d for d in entry["decisions"] if d["concurrency"] == c)
            assert decision["best"] == 3 and decision["recommended"] == 3 and decision["speculation_pays"]
        assert entry["schedule"] == [{"from": 1, "to": None, "draft_length": 3}]
        # and the matrix's own comparison of every K against K = 0 is there as well
        assert (matrix / "compare" / workload / "compare.json").is_file()
    assert "tune eagle3 · short: c1 K=3" in out.stdout.replace("\n", " ")

    # Rerun: every cell finished, so no server starts; the analysis is written again.
    (matrix / "tune" / "eagle3" / "long" / "tune.json").unlink()
    again = _matrix(plan)
    assert again.returncode == 0, again.stderr
    assert len(fake_engines.starts()) == 3
    assert orjson.loads((matrix / "tune" / "eagle3" / "long" / "tune.json").read_bytes())["decisions"] \
        == summary["tune"]["eagle3"]["long"]["decisions"]


def test_dry_run_shows_each_draft_length_as_a_recipe(fake_engines, tmp_path):
    plan = _plan(tmp_path, fake_engines, baseline="none",
                 recipes="[recipes/none.yaml, {recipe: recipes/eagle3.yaml, label: e, draft_lengths: [2, 0]}]")
    out = _matrix(plan, "--dry-run")
    assert out.returncode == 0, out.stderr
    lines = {line.split(" ", 1)[0]: line for line in out.stdout.splitlines() if line and not line.startswith(" ")}
    assert "--speculative-config" not in lines["e-k0"] and "draft length 0" in lines["e-k0"]
    assert '"num_speculative_tokens":2' in lines["e-k2"]
    assert "tune e: draft lengths 0, 2" in out.stdout
    assert fake_engines.starts() == [] and not (tmp_path / "matrix").exists()


EAGLE = "recipes/eagle3.yaml"


@pytest.mark.parametrize("recipes, baseline, loads, message", [
    (f"[{{recipe: {EAGLE}, label: e, draft_lengths: [1, 2]}}]", "e-k1", None, "draft_lengths takes a list of whole"),
    (f"[{{recipe: {EAGLE}, label: e, draft_lengths: [0]}}]", "e-k0", None, "with 0 (the baseline"),
    (f"[{{recipe: {EAGLE}, label: e, draft_lengths: [0, 1.5]}}]", "e-k0", None, "got [0, 1.5]"),
    (f"[{{recipe: {EAGLE}, label: e, draft_lengths: [0, -1, 2]}}]", "e-k0", None, "whole numbers >= 0"),
    (f"[{{recipe: {EAGLE}, label: e, draft_lengths: '0,1'}}]", "e-k0", None, "draft_lengths takes a list"),
    ("[{recipe: recipes/none.yaml, label: n, draft_lengths: [0, 1]}]", "n-k0", None,
     "draft_lengths needs a recipe with a speculative method"),
    (f"[{{recipe: {EAGLE}, label: e, draft_lengths: [0, 1]}}]", "e-k0", "request_rates: [4]",
     "draft_lengths needs concurrencies"),
    (f"[{{recipe: {EAGLE}, label: e, draft_lengths: [0, 1]}}]", "e", None, "baseline must name one of the plan's"),
    (f"[{{recipe: {EAGLE}, label: e, draft_lengths: [0, 1]}}, {{recipe: {EAGLE}, label: e-k1}}]", "e-k0", None,
     "two recipes share a label"),
    (f"[recipes/none.yaml, {{recipe: {EAGLE}, label: tune}}]", "none", None, "may not be labelled tune"),
    (f"[{{recipe: {EAGLE}, label: e, draft_lengths: [0, 1], set: {{speculative.method: ngram, "
     "speculative.draft_model: null}}]", "e-k0", None, None),  # a valid one: checked below to pass
])
def test_bad_draft_length_plans_are_one_line(fake_engines, tmp_path, recipes, baseline, loads, message):
    plan = _plan(tmp_path, fake_engines, recipes=recipes, baseline=baseline,
                 loads=loads or "concurrencies: [1, 4]")
    out = _matrix(plan, "--dry-run")
    if message is None:
        assert out.returncode == 0, out.stderr
        return
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and message in out.stderr, out.stderr
    assert fake_engines.starts() == []
