"""`loadgen sweep` against an emulator whose step time grows with the requests running, so the
curve bends and the SLO search has one right answer."""

import subprocess
import sys

import orjson
import pytest

from loadgen.studies.sweep import pareto_front


def _sweep(url: str, out, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loadgen", "sweep", "--url", url, "--output-dir", str(out),
                           "--workload", "random", "--max-tokens", "16", "-n", "48", "--no-metrics", "--no-progress",
                           *extra], capture_output=True, text=True, timeout=300)


def test_sweep_finds_the_highest_concurrency_meeting_the_slo_and_resumes(emulator, tmp_path):
    # TPOT = 2 ms + 1 ms per other request running: 10 ms at concurrency 9, 11 ms at 10
    emu = emulator("--ttft-ms", "5", "--step-ms", "2", "--load-step-ms", "1", "--accept", "")
    out = tmp_path / "sweep"
    proc = _sweep(emu.url, out, "-c", "1,4,16", "--slo", "tpot_p50=0.0105", "--find-max")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = orjson.loads((out / "sweep.json").read_bytes())
    assert summary["max_meeting_slo"] == 9
    rows = {r["value"]: r for r in summary["points"]}
    assert {1, 4, 16, 9, 10} <= set(rows) and rows[9]["slo_met"] and not rows[10]["slo_met"]
    # the curve bends: throughput grows with concurrency, each user's speed falls
    assert rows[16]["output_tps"] > rows[4]["output_tps"] > rows[1]["output_tps"]
    assert rows[16]["user_tps_p50"] < rows[4]["user_tps_p50"] < rows[1]["user_tps_p50"]
    assert summary["pareto"] and all((out / f"c{v:g}" / "report.json").exists() for v in rows)
    assert (out / "points.csv").read_text().splitlines()[0].startswith("value,output_tps,user_tps_p50")
    assert "highest concurrency meeting the SLOs" in proc.stdout
    # a second run over the same folder keeps every finished point
    before = {v: (out / f"c{v:g}" / "report.json").stat().st_mtime_ns for v in rows}
    again = _sweep(emu.url, out, "-c", "1,4,16")
    assert again.returncode == 0 and again.stdout.count("done before, kept") == 3
    assert all((out / f"c{v:g}" / "report.json").stat().st_mtime_ns == t for v, t in before.items())


def test_rate_sweep_and_bad_lists(emulator, tmp_path):
    emu = emulator("--ttft-ms", "5", "--step-ms", "2")
    proc = _sweep(emu.url, tmp_path / "rates", "--request-rate", "20,40")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = orjson.loads((tmp_path / "rates" / "sweep.json").read_bytes())
    assert summary["kind"] == "request_rate" and [r["value"] for r in summary["points"]] == [20, 40]
    bad = _sweep(emu.url, tmp_path / "bad", "-c", "1,x")
    assert bad.returncode == 2 and "comma-separated numbers" in bad.stderr
    no_slo = _sweep(emu.url, tmp_path / "noslo", "-c", "1,2", "--find-max")
    assert no_slo.returncode == 2 and "give --slo too" in no_slo.stderr


def test_pareto_front():
    rows = [{"value": 1, "output_tps": 100, "user_tps_p50": 50}, {"value": 2, "output_tps": 180, "user_tps_p50": 45},
            {"value": 4, "output_tps": 170, "user_tps_p50": 40}, {"value": 8, "output_tps": 300, "user_tps_p50": 30}]
    assert pareto_front(rows) == [1, 2, 8]  # 4 is beaten by 2 on both


def test_a_sweep_repeats_each_point_and_resumes_its_repeats(emulator, tmp_path):
    # TPOT = 2 ms + 1 ms per other request running: the spread between repeats is small
    emu = emulator("--ttft-ms", "5", "--step-ms", "2", "--load-step-ms", "1", "--accept", "")
    out = tmp_path / "sweep"
    proc = _sweep(emu.url, out, "-c", "1,2", "-n", "8", "--repeats", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {r["value"]: r for r in orjson.loads((out / "sweep.json").read_bytes())["points"]}
    for value, row in rows.items():
        repeats = orjson.loads((out / f"c{value:g}" / "repeats.json").read_bytes())["figures"]
        assert row["repeats"] == 2 and row["output_tps"] == repeats["output_tps"]["mean"]
        assert row["tpot_p50_s_std"] == repeats["tpot_p50_s"]["std"] >= 0
        assert repeats["tpot_p50_s"]["mean"] * 1e3 == pytest.approx(2 + (value - 1), abs=1.5)
    assert "mean ± std over 2 repeats" in proc.stdout
    again = _sweep(emu.url, out, "-c", "1,2", "-n", "8", "--repeats", "2")
    assert again.returncode == 0 and again.stdout.count("done before, kept") == 4
