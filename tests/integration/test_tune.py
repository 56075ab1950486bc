"""`loadgen tune` against the built-in emulator running a known step cost model: the best draft
length per concurrency, where speculation stops paying, and the predictions of points not run are
known in closed form (loadgen/analysis/step_model.py), so tune must find exactly them."""

from __future__ import annotations

import shutil
import subprocess
import sys

import orjson
import pytest

from loadgen.analysis.step_model import StepModel, oracle_speedup, speedup, tpot_ms

from .test_bad_input import assert_one_line_error

#: memory-bound to 12 verified tokens per iteration, compute-bound after: at concurrency 1 the longest
#: draft pays best, at 4 a draft of 2, at 16 none (every K slower than no speculation)
COST = "base=10,token=0.05,knee=12,compute=1.0,draft=0.3"
TRUTH = StepModel.parse(COST)
ACCEPT = [0.9, 0.85, 0.8, 0.75]
LENGTHS = range(5)
MEASURED = (1, 4, 16)
#: a measured speedup against the closed form, which knows no max_tokens: at 40 tokens the last step's
#: cut costs K = 4 about 3 % of its AL, and 16 requests' acceptance draws vary by about 3 % more
MEASURED_TOLERANCE = 0.08


def _tune(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loadgen", "tune", *args], capture_output=True, text=True,
                          timeout=900, cwd=cwd)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """One study for the module: 5 draft lengths x 3 concurrencies, 16 requests of 40 tokens each, then
    the confirmation runs at concurrency 2 and 8 (between the measured ones)."""
    folder = tmp_path_factory.mktemp("tune")
    proc = _tune("-k", ",".join(map(str, LENGTHS)), "-c", ",".join(map(str, MEASURED)), "--output-dir",
                 str(folder / "study"), "--num-requests", "16", "--max-tokens", "40", "--workload", "random",
                 "--input-len", "32", "--emulator-accept", ",".join(map(str, ACCEPT)), "--emulator-cost", COST,
                 "--emulator-ttft-ms", "20", "--no-plots", "--no-metrics", "--no-progress", "--confirm", cwd=folder)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return folder / "study", proc.stdout


def test_the_closed_form_best_draft_length_and_crossover_are_found(tuned):
    study, stdout = tuned
    summary = orjson.loads((study / "tune.json").read_bytes())
    decisions = {d["concurrency"]: d for d in summary["decisions"]}
    for c in MEASURED:
        truth = [speedup(TRUTH, ACCEPT, c, k) for k in LENGTHS]
        best = max(LENGTHS, key=lambda k: truth[k])
        decision = decisions[c]
        if truth[best] > 1:
            assert decision["best"] == best, (c, truth, decision)
            expected = decision["runner_up"] if decision["runner_up_within_noise"] and \
                decision["runner_up"] < best else best
            assert decision["recommended"] == expected and decision["speculation_pays"]
        else:  # no K pays: the measured speedups' intervals all reach below 1
            assert decision["recommended"] == 0 and not decision["speculation_pays"]
    assert summary["off_from"] == 16
    assert summary["schedule"]["ranges"][-1] == {"from": 16, "to": None, "draft_length": 0}
    assert "Speculation stops paying from concurrency 16" in stdout
    # the measured speedups are the closed form's, within MEASURED_TOLERANCE
    rows = {(r["concurrency"], r["draft_length"]): r for r in summary["rows"]}
    for (c, k), row in rows.items():
        assert row["speedup"] == pytest.approx(speedup(TRUTH, ACCEPT, c, k), rel=MEASURED_TOLERANCE), (c, k)
        assert row["speedup_low"] <= row["speedup"] <= row["speedup_high"]


def test_the_fitted_model_predicts_points_not_run_within_3_percent(tuned):
    study, _ = tuned
    summary = orjson.loads((study / "tune.json").read_bytes())
    model = summary["model"]
    assert model["knee_tokens"] == pytest.approx(12, rel=0.1)  # the batch sizes measured bracket it
    assert model["max_error"] < 0.05
    assert summary["acceptance"]["conditional"] == pytest.approx(ACCEPT, abs=0.05)
    assert summary["acceptance"]["assumption"]["checked"]
    assert summary["acceptance"]["assumption"]["max_difference"] < 0.1
    unmeasured = [p for p in summary["predictions"] if not p["measured"]]
    assert {p["concurrency"] for p in unmeasured} >= {2, 8, 32}
    for p in unmeasured:
        c, k = p["concurrency"], p["draft_length"]
        assert p["tpot_ms"] == pytest.approx(tpot_ms(TRUTH, ACCEPT, c, k), rel=0.03), (c, k)
        if k:
            assert p["oracle_speedup"] == pytest.approx(oracle_speedup(TRUTH, ACCEPT, c, k), rel=0.03), (c, k)
            assert p["oracle_speedup"] >= p["speedup"]


def test_confirmation_runs_the_predicted_best_draft_length_where_none_was_measured(tuned):
    study, stdout = tuned
    summary = orjson.loads((study / "tune.json").read_bytes())
    confirmed = {c["concurrency"]: c for c in summary["confirmations"]}
    assert set(confirmed) == {2, 8}
    for c, row in confirmed.items():
        truth = [speedup(TRUTH, ACCEPT, c, k) for k in LENGTHS]
        assert row["draft_length"] == max(LENGTHS, key=lambda k: truth[k])  # 4 at c = 2, 1 at c = 8
        assert row["predicted_speedup"] == pytest.approx(truth[row["draft_length"]], rel=0.03)
        assert row["measured_speedup"] == pytest.approx(truth[row["draft_length"]], rel=MEASURED_TOLERANCE)
        assert row["recommended"] == row["draft_length"]  # it paid, as measured
        assert (study / "confirm" / f"k{row['draft_length']}" / f"c{c}" / "report.json").is_file()
        assert (study / "confirm" / "k0" / f"c{c}" / "report.json").is_file()
    # the measured recommendation joins the schedule between the measured loads
    decisions = {d["concurrency"]: d for d in summary["decisions"]}
    assert decisions[2]["recommended"] == confirmed[2]["draft_length"] and decisions[2]["confirmation"]
    assert "Confirmation: the model's best K" in stdout


def test_oracle_headroom_and_rejected_share_per_point(tuned):
    study, _ = tuned
    summary = orjson.loads((study / "tune.json").read_bytes())
    for row in summary["rows"]:
        k = row["draft_length"]
        if not k:
            assert row["rejected_share"] is None and row["oracle_speedup"] is None
            continue
        accepted_per_draft = sum(_reach(ACCEPT[:k]))  # expected accepted tokens per draft of k
        assert row["rejected_share"] == pytest.approx(1 - accepted_per_draft / k, abs=0.06)
        assert row["oracle_speedup"] >= row["predicted_speedup"]
        # per category (here one: random), from its client AL under the fitted model
        category = row["by_category"]["random"]
        # the category's AL is its requests' mean AL, the row's the pooled tokens per step: close, not equal
        assert category["acceptance_length"] == pytest.approx(row["acceptance_length"], rel=0.03)
        assert category["oracle_speedup"] == pytest.approx(oracle_speedup(TRUTH, ACCEPT, row["concurrency"], k),
                                                           rel=MEASURED_TOLERANCE)
        assert category["rejected_share"] == pytest.approx(1 - accepted_per_draft / k, abs=0.06)
    assert (study / "tune.csv").read_text().splitlines()[0].startswith("concurrency,draft_length,measured")


def test_analyse_rereads_the_runs_and_refuses_what_it_cannot_compare(tuned, tmp_path):
    study, _ = tuned
    again = _tune("--analyse", str(study), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    for name in ("heatmap.png", "speedup.png"):  # the pictures, drawn from the runs on disk
        assert (study / name).read_bytes().startswith(b"\x89PNG")
    page = (study / "tune.html").read_text()
    assert "Recommendation" in page and page.count("data:image/png;base64,") == 2
    first = orjson.loads((study / "tune.json").read_bytes())
    assert orjson.loads((study / "tune.json").read_bytes())["decisions"] == first["decisions"]

    no_baseline = tmp_path / "no-baseline"
    shutil.copytree(study / "k2", no_baseline / "k2")
    shutil.copytree(study / "k3", no_baseline / "k3")
    assert_one_line_error(_tune("--analyse", str(no_baseline), cwd=tmp_path), "has no baseline", "k0/")
    one = tmp_path / "one"
    shutil.copytree(study / "k0", one / "k0")
    assert_one_line_error(_tune("--analyse", str(one), cwd=tmp_path), "one draft length only")
    uneven = tmp_path / "uneven"
    shutil.copytree(study / "k0", uneven / "k0")
    shutil.copytree(study / "k1", uneven / "k1")
    shutil.rmtree(uneven / "k1" / "c16")
    assert_one_line_error(_tune("--analyse", str(uneven), cwd=tmp_path), "the same concurrencies", "k1/c16")
    assert_one_line_error(_tune("--analyse", str(tmp_path / "nothing"), cwd=tmp_path), "is no folder")
    other = tmp_path / "other-workload"  # a run that sent other max_tokens cannot be compared with the rest
    shutil.copytree(study / "k0", other / "k0")
    shutil.copytree(study / "k1", other / "k1")
    report = orjson.loads((other / "k1" / "c4" / "report.json").read_bytes())
    report["config"]["max_tokens"] = 64
    (other / "k1" / "c4" / "report.json").write_bytes(orjson.dumps(report))
    assert_one_line_error(_tune("--analyse", str(other), cwd=tmp_path), "the runs do not share a workload",
                          "max_tokens 64 at K=1 c=4")


def test_an_engine_that_runs_one_k_is_given_the_k_for_the_stated_load(tuned, tmp_path):
    study, _ = tuned
    decisions = {d["concurrency"]: d for d in orjson.loads((study / "tune.json").read_bytes())["decisions"]}
    for load, top in (("1-1", 1), ("3-4", 4)):
        assert _tune("--analyse", str(study), "--deploy-load", load, "--no-plots", cwd=tmp_path).returncode == 0
        engines = {e["engine"]: e for e in orjson.loads((study / "tune.json").read_bytes())["schedule"]["engines"]}
        assert engines["sglang"]["single_draft_length"] == decisions[top]["recommended"], load
        assert engines["vllm"]["accepts"] == "per_batch_size"  # vLLM takes the whole table whatever the load
    assert_one_line_error(_tune("--analyse", str(study), "--deploy-load", "4-2", cwd=tmp_path),
                          "--deploy-load takes LOW-HIGH")


@pytest.mark.parametrize("args, message", [
    (["-k", "1,2"], "needs 0 (the baseline"),
    (["-k", "0"], "needs 0 (the baseline"),
    (["-k", "0,x"], "comma-separated whole numbers"),
    (["-c", "0,4"], "--concurrency takes comma-separated whole numbers >= 1"),
    (["-k", "0,5", "--emulator-accept", "0.8,0.6"], "goes up to 5 but --emulator-accept gives 2 positions"),
    (["--emulator-cost", "base=1,speed=2"], "--emulator-cost: 'speed=2' is not one of"),
])
def test_bad_tune_input_is_one_line(tmp_path, args, message):
    assert_one_line_error(_tune(*args, "--output-dir", str(tmp_path / "t"), cwd=tmp_path), message)


DRAFT = ["--recipe", "llamacpp/llama3.1-8b-draft"]


@pytest.mark.parametrize("args, needles", [
    ([*DRAFT, "--url", "http://127.0.0.1:1"], ["give --recipe (served at each K) instead of --url"]),
    (["--url", "http://127.0.0.1:1"], ["cannot set the draft length of a server it did not start"]),
    (["--set", "model=/m.gguf"], ["apply to the server of --recipe: give --recipe"]),
    (["--recipe", "llamacpp/llama3.1-8b-none"], ["serves no speculation"]),
    ([*DRAFT, "--set", "speculative.draft_model=null"], ["needs speculative.draft_model"]),
    ([*DRAFT, "--set", "speculative.method=eagle"], ["at draft length 1", "has no EAGLE-1"]),
    ([*DRAFT, "--set", "speculative.options.spec_synth_rates=[0.9]", "-k", "0,1,2"],
     ["at draft length 2", "gives 1 rate(s) but num_speculative_tokens is 2"]),
    ([*DRAFT, "--engine", "vllm"], ["is a llamacpp recipe"]),
    (["--recipe", "no-such-recipe"], ["no recipe named no-such-recipe"]),
])
def test_bad_recipe_input_is_one_line_before_anything_starts(tmp_path, args, needles):
    assert_one_line_error(_tune(*args, "--output-dir", str(tmp_path / "t"), cwd=tmp_path), *needles)
    assert not (tmp_path / "t").exists()


def _reach(conditional):
    """P(position i accepted) for each position: the running products of the conditional rates."""
    total = 1.0
    for p in conditional:
        total *= p
        yield total
