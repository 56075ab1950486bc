"""The shipped llama.cpp recipes, for real: `loadgen serve` and `loadgen matrix` start llama-server
from the shipped recipes (loadgen/servers/recipes/llamacpp; only the model files, the binary and the
context are overridden for these tiny CPU models), wait until it serves, measure it, and stop it
with nothing left behind."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap

import orjson
import pytest
from rich.console import Console

from loadgen.config import RunConfig
from loadgen.layout import MatrixFolder
from loadgen.run import run
from loadgen.servers import ServerProcess, load_recipe
from loadgen.servers.process import group_alive

from .synthetic import assert_server_al, expected

RATES = (0.8, 0.6, 0.4)


def _overrides(binary, models, recipe: str) -> list[str]:
    """Only what a CPU box with tiny models needs; the rest is the recipe as shipped."""
    sets = [f"executable={binary}", f"model={models.target}", "max_model_len=8192"]
    if recipe.endswith("draft"):
        sets += [f"speculative.draft_model={models.draft}", "speculative.num_speculative_tokens=3",
                 f"speculative.options.spec_synth_rates=[{','.join(map(str, RATES))}]"]
    return sets


@pytest.mark.parametrize("name", ["llama3.1-8b-none", "llama3.1-8b-draft", "llama3.1-8b-ngram"])
def test_serve_starts_each_shipped_llamacpp_recipe_and_measures_it(llama_server_bin, llama_models, tmp_path, name):
    recipe = load_recipe(f"llamacpp/{name}", _overrides(llama_server_bin, llama_models, name))
    with ServerProcess(recipe, log_path=tmp_path / "server.log", port=0, grace_s=10) as server:
        assert server.ready.startup_s < 60
        pgid = server.pgid
        report = run(RunConfig(url=server.url, engine="llamacpp", output_dir=tmp_path / "run", workload="random",
                               input_len=64, num_requests=24, concurrency=4, max_tokens=32,
                               tokenizer=str(llama_models.tokenizer), progress=False, plots=False, metrics_addr=None),
                     Console(file=io.StringIO())).to_json()
    assert not group_alive(pgid)
    summary = report["summary"]
    assert summary["requests_completed"] == 24 and summary["output_tokens"] == 24 * 32
    server = report["speculative"]["server"] or {}
    if name.endswith("draft"):  # the synthetic rates are the truth
        assert_server_al(server, expected(RATES, 32))
    elif name.endswith("none"):
        assert not server.get("acceptance_length") or server["acceptance_length"] == pytest.approx(1.0)
    log = (tmp_path / "server.log").read_text(errors="replace")
    assert "--metrics" in log.splitlines()[0]  # the command as rendered heads the log


def test_matrix_of_the_llamacpp_recipes_for_real(llama_server_bin, llama_models, tmp_path):
    def entry(name: str) -> str:
        sets = ", ".join(f"{k}: {v}" for k, v in (s.split("=", 1) for s in
                                                  _overrides(llama_server_bin, llama_models, name)))
        return f"{{recipe: llamacpp/{name}, set: {{{sets}}}}}"

    plan = tmp_path / "plan.yaml"
    plan.write_text(textwrap.dedent(f"""\
        baseline: llamacpp-llama3.1-8b-none
        recipes: [{entry('llama3.1-8b-none')}, {entry('llama3.1-8b-draft')}]
        workloads: [random]
        concurrencies: [1, 2]
        run: {{num_requests: 12, max_tokens: 32, input_len: 64, tokenizer: {llama_models.tokenizer},
               no_progress: true, no_metrics: true, no_plots: true}}
        output_dir: {tmp_path / 'matrix'}
        serve: {{port: 0}}
        """))
    out = subprocess.run([sys.executable, "-m", "loadgen", "matrix", str(plan)], capture_output=True, text=True,
                         timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    summary = orjson.loads((tmp_path / "matrix" / "matrix.json").read_bytes())
    assert {i["status"] for i in summary["recipes"].values()} == {"measured"}
    rows = {(r["recipe"], r["value"]): r for r in summary["rows"]}
    assert len(rows) == 4 and all(r["failed"] == 0 for r in rows.values())
    cell = MatrixFolder(tmp_path / "matrix").cell("llamacpp-llama3.1-8b-draft", "random")
    for value in (1, 2):
        draft = rows[("llamacpp-llama3.1-8b-draft", value)]
        server = orjson.loads(cell.point("concurrency", value).report.read_bytes())["speculative"]["server"]
        assert draft["server_acceptance_length"] == server["acceptance_length"]
        assert_server_al(server, expected(RATES, 32))
        assert draft["output_tps_speedup"] is not None
    assert (tmp_path / "matrix" / "compare" / "random" / "compare.json").is_file()
