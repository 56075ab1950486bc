"""`loadgen sweep --temperatures` against the built-in emulator, whose conditional acceptance is
multiplied by max(0, 1 - 0.35 T) at the request's temperature T (loadgen/emulator/profile.py), so
the AL and the acceptance at draft position 1 of every point are known; and `compare` of that sweep
against the same sweep without speculation, whose speedup must fall with the temperature."""

from __future__ import annotations

import io
import math
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from rich.console import Console

from loadgen.cli import main
from loadgen.emulator.profile import expected_acceptance_length
from loadgen.errors import UsageError
from loadgen.sinks.plots import render_sweep
from loadgen.studies import compare

ACCEPT = (0.8, 0.6, 0.4)
TEMPERATURES = (0.0, 0.5, 1.0, 1.5)
#: the emulator's default --accept-temperature-slope: the seeds' 0.81 at T 0 falling to 0.38 at 1.5
SLOPE = 0.35
MAX_TOKENS = 48
#: a wave of warm-up requests per point: a cold first wave (44 ms to the first token against 5 seen once)
#: lets the emulator's step deadlines catch up, and its TPOT reads 15 % low
COMMON = ("--temperatures", ",".join(f"{t:g}" for t in TEMPERATURES), "-c", "16", "-n", "32", "--warmup", "16",
          "--max-tokens", str(MAX_TOKENS), "--workload", "random", "--input-len", "32", "--emulator-ttft-ms", "5",
          "--emulator-step-ms", "10", "--no-plots", "--no-metrics", "--no-progress")


def _loadgen(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "loadgen", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> tuple[Path, str, str]:
    """One temperature sweep with speculation, the same without (--emulator-accept ''), and their
    comparison: (folder, the sweep's console, the comparison's console)."""
    folder = tmp_path_factory.mktemp("temperature")
    sd = _loadgen("sweep", *COMMON, "--emulator-accept", ",".join(map(str, ACCEPT)), "--output-dir",
                  str(folder / "sd"), cwd=folder)
    _loadgen("sweep", *COMMON, "--emulator-accept", "", "--output-dir", str(folder / "base"), cwd=folder)
    cmp = _loadgen("compare", str(folder / "sd"), "--baseline", str(folder / "base"), "--output-dir",
                   str(folder / "cmp"), cwd=folder)
    return folder, sd.stdout, cmp.stdout


def _tolerance(histogram: dict[str, int], mean: float) -> tuple[float, float]:
    """How far below and above the expected AL a measured one may lie: 4 standard errors of the
    steps' mean, and below also one step more per request than the closed form counts (each
    request's last step is cut at max_tokens: AL * T / (T + AL) for T decode tokens)."""
    steps = sum(histogram.values())
    variance = sum(n * (int(k) - mean) ** 2 for k, n in histogram.items()) / (steps - 1)
    noise = 4 * math.sqrt(variance / steps)
    decode_tokens = MAX_TOKENS - 1  # the prefill's token is no step
    return noise + mean * mean / (decode_tokens + mean), noise


def test_acceptance_falls_with_temperature_as_the_emulator_was_told(swept):
    folder, stdout, _ = swept
    summary = orjson.loads((folder / "sd" / "sweep.json").read_bytes())
    assert summary["kind"] == "temperature" and summary["held_load"] == "concurrency 16"
    assert summary["pareto"] == [] and "Sweep over temperature at concurrency 16" in stdout
    rows = {r["value"]: r for r in summary["points"]}
    assert tuple(rows) == TEMPERATURES
    for t, row in rows.items():
        report = orjson.loads((folder / "sd" / f"t{t:g}" / "report.json").read_bytes())
        assert report["config"]["temperature"] == t and report["config"]["concurrency"] == 16
        truth = expected_acceptance_length(ACCEPT, temperature=t, temperature_slope=SLOPE)
        below, above = _tolerance(report["speculative"]["client"]["histogram"], row["acceptance_length"])
        assert truth - below <= row["acceptance_length"] <= truth + above, (t, truth, row["acceptance_length"])
        # draft position 1: the emulator's first conditional acceptance, scaled (binomial noise, 4 sigma)
        p1 = ACCEPT[0] * max(0.0, 1 - SLOPE * t)
        steps = sum(report["speculative"]["client"]["histogram"].values())
        assert row["position1_acceptance"] == pytest.approx(p1, abs=4 * math.sqrt(p1 * (1 - p1) / steps)), t
    als = [rows[t]["acceptance_length"] for t in TEMPERATURES]
    assert als == sorted(als, reverse=True) and als[0] - als[-1] > 0.6  # 2.47 -> 1.51 in the closed form
    assert "position1_acceptance" in (folder / "sd" / "points.csv").read_text().splitlines()[0].split(",")


def test_a_rerun_keeps_every_finished_temperature(swept):
    folder, _, _ = swept
    before = {t: (folder / "base" / f"t{t:g}" / "report.json").stat().st_mtime_ns for t in TEMPERATURES}
    again = _loadgen("sweep", *COMMON, "--emulator-accept", "", "--output-dir", str(folder / "base"), cwd=folder)
    assert again.stdout.count("done before, kept") == len(TEMPERATURES)
    assert {t: (folder / "base" / f"t{t:g}" / "report.json").stat().st_mtime_ns for t in TEMPERATURES} == before


def test_the_sweep_picture_is_drawn_against_temperature(swept, tmp_path):
    folder, _, _ = swept
    summary = orjson.loads((folder / "sd" / "sweep.json").read_bytes())
    page = render_sweep(summary, tmp_path)
    assert (tmp_path / "temperature.png").stat().st_size > 10_000 and not (tmp_path / "pareto.png").exists()
    html = page.read_text()
    assert html.count("<img") == 1 and "<th>temperature</th>" in html and "acceptance pos 1" in html


def test_compare_matches_points_by_temperature_and_the_speedup_falls(swept):
    folder, _, stdout = swept
    result = orjson.loads((folder / "cmp" / "compare.json").read_bytes())
    assert result["axis"] == "temperature"
    points = result["runs"][str(folder / "sd")]["points"]
    assert list(points) == [f"{t:g}" for t in TEMPERATURES]
    # the same step time with and without speculation: TPOT improves by the AL at each temperature
    speedups = [points[f"{t:g}"]["tpot_speedup"] for t in TEMPERATURES]
    assert speedups == sorted(speedups, reverse=True), speedups
    for t in TEMPERATURES:
        assert points[f"{t:g}"]["tpot_speedup"] == pytest.approx(points[f"{t:g}"]["acceptance_length"], rel=0.15)
    assert points["0"]["user_tps_speedup"] > points["1.5"]["user_tps_speedup"]
    assert "pays off at every temperature compared" in stdout
    assert (folder / "cmp" / "temperature.png").stat().st_size > 10_000
    # temperature.png, the per-prompt speedups and the AL boxes (the runs share their prompt ids)
    assert (folder / "cmp" / "compare.html").read_text().count("<img") == 3


def test_compare_refuses_a_baseline_over_another_axis(swept):
    folder, _, _ = swept
    with pytest.raises(UsageError, match="lies along temperature but the baseline .* along concurrency: compare "
                                         "sweeps over the same axis"):
        compare([folder / "sd"], folder / "base" / "t0", None, Console(file=io.StringIO()))  # a run: its load's axis


@pytest.mark.parametrize("args, message", [
    (("--temperatures", ""), "--temperatures takes comma-separated temperatures >= 0"),
    (("--temperatures", "0,-0.5"), "--temperatures takes temperatures >= 0, got -0.5"),
    (("--temperatures", "0,1,1"), "names temperature 1 twice"),
    (("--temperatures", "0,x"), "--temperatures takes comma-separated numbers"),
    (("--temperatures", "0,1", "-c", "1,4"), "give --concurrency one value"),
    (("--temperatures", "0,1", "-c", "4", "--request-rate", "2"), "give --concurrency or --request-rate, not both"),
    (("--temperatures", "0,1", "--temperature", "0.5"), "leave --temperature out"),
    (("--temperatures", "0,1", "--find-max", "--slo", "ttft_p50=1"), "a temperature sweep holds one load"),
])
def test_bad_temperature_lists_are_one_line(args, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["loadgen", "sweep", *args, "-n", "4", "--output-dir", str(tmp_path / "s")])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "s").exists()
