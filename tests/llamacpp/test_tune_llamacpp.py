"""`loadgen tune --recipe` against a REAL engine: the shipped llama.cpp draft recipe (only the
binary, the tiny models, the context and the synthetic acceptance overridden, as in
test_serve_llamacpp.py) served once per draft length K in {0, 1, 2, 3}, swept over concurrencies
1 and 2, stopped, and analysed.

What llama-server guarantees is asserted; what a GPU would show is not (on 2 CPU cores, with a
1-layer draft of a 2-layer target, drafting costs about what it saves: the best K may be any, or
none). The truth for the acceptance: `--spec-synth-rates r_1,...,r_K` are UNCONDITIONAL per-position
acceptance rates (llama.cpp as vendored in llama-cpp-python 0.3.36: common/arg.cpp, the flag's help
"comma-separated unconditional per-position synthetic acceptance probabilities";
common/speculative.cpp, common_speculative_init, synth_probs = r_i / r_(i-1);
tools/server/server-context.cpp, server_sample_and_accept_synth, accepts position i with that
conditional probability and stops at the first rejection), so a full draft of K accepts
1 + r_1 + ... + r_K tokens per step on average: AL = 1 + sum of the first K rates, NOT the sum of
their running products. llama-server wants exactly K rates (common_speculative_synth_rates_resolve:
"must contain %d values"), so the llama.cpp launcher passes the recipe's first K."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from .synthetic import expected

RATES = (0.9, 0.8, 0.7)
LENGTHS = (0, 1, 2, 3)
CONCURRENCIES = (1, 2)
CONFIRM = 4  # not measured: the model's best drafting K is run there against the baseline
REQUESTS = 16
MAX_TOKENS = 64


def _tune(llama_server_bin, llama_models, out: Path, *extra: str, cwd: Path) -> subprocess.CompletedProcess:
    sets = [f"executable={llama_server_bin}", f"model={llama_models.target}", "max_model_len=8192",
            f"speculative.draft_model={llama_models.draft}",
            f"speculative.options.spec_synth_rates=[{','.join(map(str, RATES))}]"]
    args = ["--recipe", "llamacpp/llama3.1-8b-draft", *(a for s in sets for a in ("--set", s)), "--port", "0",
            "-k", ",".join(map(str, LENGTHS)), "-c", ",".join(map(str, CONCURRENCIES)), "-n", str(REQUESTS),
            "--warmup", "2", "--max-tokens", str(MAX_TOKENS), "--workload", "random", "--input-len", "32",
            "--tokenizer", str(llama_models.tokenizer), "--no-plots", "--no-metrics", "--no-progress",
            "--output-dir", str(out), *extra]
    return subprocess.run([sys.executable, "-m", "loadgen", "tune", *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd)


@pytest.fixture(scope="module")
def tuned(llama_server_bin, llama_models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tune-llamacpp")
    started = time.monotonic()
    proc = _tune(llama_server_bin, llama_models, folder / "study", "--confirm-concurrency", str(CONFIRM), cwd=folder)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    return folder / "study", proc.stdout, elapsed


def test_every_run_finished_and_the_server_al_is_the_synthetic_rates(tuned, capsys):
    study, _, _ = tuned
    lines = []
    for k in LENGTHS:
        for c in CONCURRENCIES:
            report = orjson.loads((study / f"k{k}" / f"c{c}" / "report.json").read_bytes())
            summary = report["summary"]
            assert not report["partial"]
            assert summary["requests_completed"] == REQUESTS and summary["requests_failed"] == 0, (k, c)
            assert summary["output_tokens"] == REQUESTS * MAX_TOKENS
            server = report["speculative"]["server"]
            if not k:
                assert not server or not server.get("drafts"), server  # no draft model, nothing drafted
                continue
            truth = expected(RATES[:k], MAX_TOKENS)
            expected_al, tolerance = truth.acceptance_length, truth.al_tolerance(server["drafts"])
            lines.append(f"K={k} c={c}: server AL {server['acceptance_length']:.3f} over {server['drafts']:.0f} "
                         f"drafts; 1 + sum of the first K rates {1 + sum(RATES[:k]):.3f}, with the shortened last "
                         f"drafts of {MAX_TOKENS}-token requests {expected_al:.3f} (+- {tolerance:.3f})")
            assert server["drafts"] == pytest.approx(REQUESTS * truth.drafts_per_request, rel=0.1)
            assert server["acceptance_length"] == pytest.approx(expected_al, abs=tolerance), lines[-1]
    with capsys.disabled():
        print("\n" + "\n".join(lines))


def _running(argv: list[str]) -> list[int]:
    """Processes whose command line is exactly this one (other tests may run llama-servers of their own)."""
    wanted = "\0".join(argv).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().rstrip(b"\0") == wanted:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _without(command: list[str], flags: set[str]) -> list[str]:
    """The command without these flags and their values, its port masked (each server took a free one)."""
    out, skip = [], False
    for i, arg in enumerate(command):
        if skip:
            skip = False
        elif arg in flags:
            skip = True
        else:
            out.append("PORT" if i and command[i - 1] == "--port" else arg)
    return out


SPEC_FLAGS = {"--spec-type", "--spec-draft-n-max", "-md", "--spec-synth-rates"}


def test_each_draft_length_reached_llama_server_as_its_flag_and_no_server_is_left(tuned):
    study, _, _ = tuned
    servers = orjson.loads((study / "tune.json").read_bytes())["servers"]
    assert sorted(map(int, servers)) == list(LENGTHS)
    baseline = servers["0"]["command"]
    assert not SPEC_FLAGS & set(baseline)  # K = 0: speculation off
    for k in LENGTHS:
        info = servers[str(k)]
        command = info["command"]
        assert info == orjson.loads((study / f"k{k}" / "server.json").read_bytes())
        first = (study / f"k{k}" / "server.log").read_text(errors="replace").splitlines()[0]
        assert first.startswith("# loadgen serve llamacpp/llama3.1-8b-draft: ") and first.endswith(command[-1])
        if k:
            assert command[command.index("--spec-draft-n-max") + 1] == str(k)
            assert f"--spec-draft-n-max {k} " in first
            assert command[command.index("--spec-synth-rates") + 1] == ",".join(map(str, RATES[:k]))
            assert command[command.index("--spec-type") + 1] == "draft-simple"
        # the speculative flags are all that differ between the draft lengths: the comparison is fair
        assert _without(command, SPEC_FLAGS) == _without(baseline, SPEC_FLAGS)
        assert info["startup_s"] > 0
        assert not _running(command), f"the K={k} server is still running"


def test_tune_decides_each_concurrency_and_fits_a_model(tuned, capsys):
    study, stdout, elapsed = tuned
    summary = orjson.loads((study / "tune.json").read_bytes())
    assert [d["concurrency"] for d in summary["decisions"]] == sorted([*CONCURRENCIES, CONFIRM])
    assert [d["concurrency"] for d in summary["decisions"] if d.get("confirmation")] == [CONFIRM]
    assert summary["draft_lengths"] == list(LENGTHS)
    model = summary["model"]
    assert len(model["points"]) == len(LENGTHS) * len(CONCURRENCIES) and math.isfinite(model["max_error"])
    assert summary["acceptance"]["conditional"][0] == pytest.approx(RATES[0], abs=0.05)
    unmeasured = [p for p in summary["predictions"] if not p["measured"]]
    assert unmeasured and all(p["tpot_ms"] > 0 for p in unmeasured)
    assert "Speedup of TPOT over no speculation" in stdout
    rows = {(r["concurrency"], r["draft_length"]): r for r in summary["rows"]}
    table = [f"tune --recipe llamacpp/llama3.1-8b-draft, rates {RATES}, {REQUESTS} requests x {MAX_TOKENS} tokens "
             f"per point, {elapsed:.0f} s",
             "measured TPOT speedup over K=0 [95 % interval]:"]
    for d in summary["decisions"]:
        if d.get("confirmation"):
            continue  # printed by the confirmation's own test
        c = d["concurrency"]
        cells = ", ".join(f"K={k} {rows[(c, k)]['speedup']:.2f} [{rows[(c, k)]['speedup_low']:.2f}, "
                          f"{rows[(c, k)]['speedup_high']:.2f}]" for k in LENGTHS[1:])
        table.append(f"  c={c} (K=0 TPOT {rows[(c, 0)]['tpot_ms']:.2f} ms): {cells}; recommended "
                     f"{d['recommended'] or 'off'}")
    table.append(f"fit: {model['base_ms']:.2f} ms + {model['token_ms']:.3f} ms/token + {model['draft_ms']:.3f} ms "
                 f"per draft position (knee {model['knee_tokens']}), max error {model['max_error']:.1%}")
    table.append("predicted, not run: " + "; ".join(
        f"c={p['concurrency']} K={p['draft_length']} TPOT {p['tpot_ms']:.2f} ms speedup {p['speedup']:.2f}"
        for p in unmeasured))
    with capsys.disabled():
        print("\n" + "\n".join(table))


def test_the_confirmation_runs_the_predicted_best_k_where_nothing_was_measured(tuned, capsys):
    study, stdout, _ = tuned
    summary = orjson.loads((study / "tune.json").read_bytes())
    [row] = summary["confirmations"]
    predicted = {p["draft_length"]: p["speedup"] for p in summary["predictions"] if p["concurrency"] == CONFIRM}
    assert row["concurrency"] == CONFIRM and row["draft_length"] == max(LENGTHS[1:], key=lambda k: predicted[k])
    assert row["predicted_speedup"] == pytest.approx(predicted[row["draft_length"]])
    assert row["speedup_low"] <= row["measured_speedup"] <= row["speedup_high"]
    assert row["recommended"] == (row["draft_length"] if row["speedup_low"] > 1 else 0)  # what was measured
    for k in (0, row["draft_length"]):  # each served, swept at 4 and stopped
        assert (study / "confirm" / f"k{k}" / f"c{CONFIRM}" / "report.json").is_file()
        assert (study / "confirm" / f"k{k}" / "server.log").is_file()
    assert "Confirmation: the model's best K" in stdout
    with capsys.disabled():
        print(f"\nconfirmation at c={CONFIRM}: K={row['draft_length']} predicted speedup "
              f"{row['predicted_speedup']:.2f}, measured {row['measured_speedup']:.2f} "
              f"[{row['speedup_low']:.2f}, {row['speedup_high']:.2f}], recommended {row['recommended'] or 'off'}")


def test_a_rerun_serves_nothing_again(tuned, llama_server_bin, llama_models):
    study, _, _ = tuned
    logs = {k: (study / f"k{k}" / "server.log").read_bytes() for k in LENGTHS}
    before = orjson.loads((study / "tune.json").read_bytes())
    again = _tune(llama_server_bin, llama_models, study, cwd=study.parent)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr
    assert again.stdout.count("not served again") == len(LENGTHS)
    assert {k: (study / f"k{k}" / "server.log").read_bytes() for k in LENGTHS} == logs
    assert orjson.loads((study / "tune.json").read_bytes())["decisions"] == before["decisions"]
