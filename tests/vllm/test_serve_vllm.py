"""The shipped vLLM CPU recipes, for real: `loadgen matrix` and `loadgen serve` start vLLM's CPU build
from loadgen/servers/recipes/vllm/cpu-qwen2.5-1.5b-{none,ngram,draft}.yaml (overridden only where
this box differs from the recipe's user: the venv, the tiny models, a small KV cache and context),
wait until it serves, measure it, and stop it with nothing left behind; and a server killed in the
middle of a run leaves every request accounted for and a partial report.

Every server started here carries a tag in its environment (env.LOADGEN_TEST_TAG), which its
children inherit, so "nothing left behind" is checked over every process on the machine, whatever
vLLM names its engine core and worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import orjson

from loadgen.records import read_journal
from loadgen.servers import load_recipe, render

from ..serving import wait_ready
from .conftest import VllmModels

RECIPES = {method: f"vllm/cpu-qwen2.5-1.5b-{method}" for method in ("none", "ngram", "draft")}
TAG_ENV = "LOADGEN_TEST_TAG"


def _overrides(python: Path, models: VllmModels, method: str, tag: str) -> dict[str, str | int]:
    """What this box needs on top of the shipped recipe: where the engine's venv is, the tiny models,
    no hub, 1 GiB of KV cache and a short context."""
    venv = python.parent.parent
    sets: dict[str, str | int] = {
        "executable": str(python), "env.LD_PRELOAD": f"{venv}/lib/libiomp5.so", "env.VLLM_CPU_KVCACHE_SPACE": "1",
        "env.HF_HUB_OFFLINE": "1", "env.VLLM_NO_USAGE_STATS": "1", f"env.{TAG_ENV}": tag,
        "model": str(models.target), "max_model_len": 2048, "max_num_seqs": 8}
    if method == "draft":
        sets["speculative.draft_model"] = str(models.draft_perturbed)
    return sets


def _tagged(tag: str) -> list[int]:
    """The pids of every process whose environment carries this test's tag."""
    needle = f"{TAG_ENV}={tag}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:  # gone meanwhile, or not ours to read
                continue
    return pids


def _nothing_left(tag: str, timeout_s: float = 10) -> list[int]:
    """Tagged processes still alive after `timeout_s` (a zombie reaped late is not a leftover)."""
    deadline = time.monotonic() + timeout_s
    while (left := _tagged(tag)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def test_the_cpu_recipes_render_the_server_module_with_the_venvs_openmp(vllm_python, vllm_models):
    """What the matrix below starts: the venv's python running the server module (its `vllm serve`
    cannot find its own distribution), the venv's Intel OpenMP preloaded, the speculative config."""
    for method, name in RECIPES.items():
        sets = _overrides(vllm_python, vllm_models, method, "render")
        launch = render(load_recipe(name, [f"{k}={v}" for k, v in sets.items()]), host="127.0.0.1", port=8123,
                        workdir=Path("/nonexistent"))
        assert launch.argv[:5] == (str(vllm_python), "-m", "vllm.entrypoints.openai.api_server", "--model",
                                   str(vllm_models.target))
        assert launch.env["LD_PRELOAD"] == f"{vllm_python.parent.parent}/lib/libiomp5.so"
        assert ("--speculative-config" in launch.argv) == (method != "none")
        assert launch.argv[-2:] == ("bfloat16", "--enforce-eager")


def test_matrix_of_baseline_and_ngram_on_real_vllm(vllm_python, vllm_models, tmp_path):
    """Two recipes served in turn, measured at two loads and compared; the draft model's recipe is
    rendered above, and its server measured in test_vllm_run.py (a third server here cost 50 s)."""
    tag = uuid.uuid4().hex

    def entry(method: str) -> str:
        sets = ", ".join(f"{k}: {orjson.dumps(v).decode()}"
                         for k, v in _overrides(vllm_python, vllm_models, method, tag).items())
        return f"{{recipe: {RECIPES[method]}, set: {{{sets}}}}}"

    plan = tmp_path / "plan.yaml"
    plan.write_text(textwrap.dedent(f"""\
        baseline: vllm-cpu-qwen2.5-1.5b-none
        recipes: [{entry('none')}, {entry('ngram')}]
        workloads: [random]
        concurrencies: [1, 4]
        run: {{num_requests: 8, max_tokens: 32, input_len: 64, tokenizer: {vllm_models.target},
               no_progress: true, no_metrics: true, no_plots: true}}
        output_dir: {tmp_path / 'matrix'}
        serve: {{port: 0, startup_timeout_s: 600}}
        """))
    out = subprocess.run([sys.executable, "-m", "loadgen", "matrix", str(plan)], capture_output=True, text=True,
                         timeout=1200, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert not _nothing_left(tag), "vLLM processes outlived loadgen matrix"

    summary = orjson.loads((tmp_path / "matrix" / "matrix.json").read_bytes())
    recipes = summary["recipes"]
    assert {info["status"] for info in recipes.values()} == {"measured"}
    for info in recipes.values():  # ready = /health, /v1/models and a served completion
        assert info["command"][1:3] == ["-m", "vllm.entrypoints.openai.api_server"] and info["startup_s"] > 0
    rows = {(r["recipe"], r["value"]): r for r in summary["rows"]}
    assert len(rows) == 4 and all(r["failed"] == 0 for r in rows.values())
    for concurrency in (1, 4):
        baseline = rows[("vllm-cpu-qwen2.5-1.5b-none", concurrency)]
        # one token per step; a chunk of two is two steps vLLM merged while its API server lagged the engine
        # (RequestOutputCollector.put; seen once in 247 steps at c = 4 here), so the client AL is 1 or a hair over
        assert not baseline["server_acceptance_length"] and 1.0 <= baseline["acceptance_length"] < 1.1
        for label in ("vllm-cpu-qwen2.5-1.5b-ngram",):
            row = rows[(label, concurrency)]
            assert row["server_acceptance_length"] > 1 and row["acceptance_length"] > 1
            assert row["output_tps_speedup"] is not None and row["user_tps_speedup"] is not None
    compare = orjson.loads((tmp_path / "matrix" / "compare" / "random" / "compare.json").read_bytes())
    assert compare  # the comparison against the baseline was written
    for label in ("vllm-cpu-qwen2.5-1.5b-ngram",):  # each cell's full report
        for report_file in (tmp_path / "matrix" / label).rglob("report.json"):
            coverage = orjson.loads(report_file.read_bytes())["speculative"]["coverage"]
            assert coverage is None or coverage["drafted_steps"] + coverage["undrafted_steps"] == \
                coverage["decode_steps"]
    print("\n" + "\n".join(f"{label}: ready after {info['startup_s']:.1f} s" for label, info in recipes.items()))


def test_a_server_killed_mid_run_leaves_every_request_accounted_for_and_a_partial_report(
        vllm_python, vllm_models, tmp_path):
    tag = uuid.uuid4().hex
    sets = _overrides(vllm_python, vllm_models, "ngram", tag)
    serve = subprocess.Popen([sys.executable, "-m", "loadgen", "serve", RECIPES["ngram"], "--port", "0",
                              "--log", str(tmp_path / "server.log"),
                              *(f"--set={k}={v}" for k, v in sets.items())],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    run = None
    try:
        url, _ = wait_ready(serve, timeout_s=600)
        out = tmp_path / "run"
        run = subprocess.Popen([sys.executable, "-m", "loadgen", "run", "--url", url, "--output-dir", str(out),
                                "--num-requests", "200", "--concurrency", "4", "--max-tokens", "48",
                                "--max-error-rate", "0.5", "--tokenizer", str(vllm_models.target),
                                "--no-progress", "--no-plots", "--no-metrics"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        journal = out / "requests.jsonl"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and run.poll() is None and _lines(journal) < 8:
            time.sleep(0.1)
        assert _lines(journal) >= 8, "the run finished no request within 300 s"
        for pgid in {os.getpgid(pid) for pid in _tagged(tag)}:  # the server dies with requests in flight
            os.killpg(pgid, signal.SIGKILL)
        run_out, run_err = run.communicate(timeout=300)
        serve_out, serve_err = serve.communicate(timeout=60)
    finally:
        for proc in (run, serve):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert not _nothing_left(tag), "vLLM processes outlived their killed group"
    # loadgen serve says its server died, in one error, and exits non-zero.
    assert serve.returncode != 0 and "was killed by signal 9 while serving" in serve_err, serve_err[-2000:]
    # The run stopped early on the error rate, with one line, and wrote the partial report.
    assert run.returncode != 0 and "stopped early" in run_err and "partial report" in run_err, run_err[-2000:]
    assert "Traceback" not in run_err
    report = orjson.loads((out / "report.json").read_bytes())
    records = list(read_journal(out / "requests.jsonl"))
    summary = report["summary"]
    measured = [r for r in records if not r.warmup]
    assert report["stop_reason"] and summary["requests_sent"] == len(measured) < 200
    ok = [r for r in measured if r.ok]
    cancelled = [r for r in measured if r.outcome == "cancelled"]  # in flight when the run stopped
    failed = [r for r in measured if not r.ok and r.outcome != "cancelled"]
    assert summary["requests_completed"] == len(ok) >= 8 and summary["requests_failed"] == len(failed) > 0
    assert len(ok) + len(failed) + len(cancelled) == len(measured)
    assert all(r.output_tokens == 48 == sum(r.chunk_tokens) for r in ok)  # finished ones are whole
    assert all(r.error and r.error.kind for r in failed)  # each failure is named
    assert summary["output_tokens"] == sum(r.output_tokens for r in measured)  # partial streams count too
    print(f"\nkilled mid-run: {len(measured)} sent, {len(ok)} completed, {len(failed)} failed "
          f"({sorted({r.error.detail for r in failed if r.error})}), {len(cancelled)} cancelled")


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0
