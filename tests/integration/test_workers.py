"""--workers N: several load processes give the same figures as one at low load; Ctrl-C still
writes a partial report with every finished request journaled."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from loadgen.records import read_journal

AL_TRUTH = 1 + 0.8 + 0.8 * 0.6 + 0.8 * 0.6 * 0.4


def test_two_workers_match_one_at_low_load(emulator, run_loadgen, tmp_path):
    emu = emulator("--ttft-ms", "20", "--step-ms", "5", "--accept", "0.8,0.6,0.4", "--seed", "3")
    reports = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        reports[workers], _ = run_loadgen(url=emu.url, num_requests=160, concurrency=8, max_tokens=48, warmup=8,
                                          workers=workers, output_dir=out)
        records = list(read_journal(out / "requests.jsonl"))
        assert len(records) == 168 and len({r.request_id for r in records}) == 168
        assert sum(r.warmup for r in records) == 8
    one, two = reports[1], reports[2]
    assert one["config"]["workers"] == 1 and two["config"]["workers"] == 2
    for report in (one, two):
        s = report["summary"]
        assert s["requests_completed"] == 160 and s["output_tokens"] == 160 * 48 and s["requests_failed"] == 0
        assert report["load"]["held"] and report["client"]["read_lag"]["reads"] > 0
        assert report["speculative"]["client"]["acceptance_length"] == pytest.approx(AL_TRUTH, rel=0.05)
    for metric, tolerance in (("ttft_s", 0.0015), ("icl_s", 0.001), ("tpot_s", 0.001)):
        assert two["latency"][metric]["p50"] == pytest.approx(one["latency"][metric]["p50"], abs=tolerance)
    # both count the same measured steps the server made (warm-up excluded in both)
    assert two["speculative"]["client"]["steps"] == two["speculative"]["server"]["drafts"]


def test_duration_bound_run_with_workers(emulator, run_loadgen):
    emu = emulator("--ttft-ms", "5", "--step-ms", "5")
    report, _ = run_loadgen(url=emu.url, duration_s=1.0, concurrency=6, max_tokens=16, workers=3)
    s = report["summary"]
    assert s["requests_completed"] >= 6 * 5 and s["requests_failed"] == 0
    assert 0.9 < s["duration_s"] < 2.5 and report["load"]["target_concurrency"] == 6


def _run_until_a_request_finished(url: str, out: Path, workers: int, max_tokens: int) -> subprocess.Popen:
    """`loadgen run` for a minute in its own process group, returned once its journal has a line."""
    proc = subprocess.Popen([sys.executable, "-m", "loadgen", "run", "--url", url, "--duration", "60",
                             "-c", "4", "--max-tokens", str(max_tokens), "--workload", "random", "--workers",
                             str(workers), "--output-dir", str(out), "--no-progress", "--no-metrics"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    journal = out / "requests.jsonl"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (journal.exists() and journal.stat().st_size > 0):
        time.sleep(0.1)
    if not (journal.exists() and journal.stat().st_size > 0):
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("no request finished within 30 s")
    return proc


@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_writes_a_partial_report(emulator, tmp_path: Path, workers):
    emu = emulator("--ttft-ms", "5", "--step-ms", "5")
    out = tmp_path / "out"
    proc = _run_until_a_request_finished(emu.url, out, workers, max_tokens=400)
    try:
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, output.decode()
    report = orjson.loads((out / "report.json").read_bytes())
    assert report["partial"] is True
    records = list(read_journal(out / "requests.jsonl"))
    assert report["summary"]["requests_sent"] == len(records) > 0
    # 400 tokens at 5 ms steps take 2 s: the requests in flight finished within the 5 s grace
    assert all(r.ok and r.output_tokens == 400 for r in records), output.decode()


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_a_lost_worker_ends_the_run_with_a_partial_report_and_one_error_line(emulator, tmp_path: Path):
    emu = emulator("--ttft-ms", "5", "--step-ms", "5")
    out = tmp_path / "out"
    proc = _run_until_a_request_finished(emu.url, out, workers=2, max_tokens=40)
    try:
        workers = [pid for pid in _children(proc.pid)
                   if b"loadgen.workers" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGKILL)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = output.decode()
    assert proc.returncode == 2, text
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in text
    assert f"a load worker (process {workers[0]}) was lost: it exited with status -9" in errors[0]
    report = orjson.loads((out / "report.json").read_bytes())
    records = list(read_journal(out / "requests.jsonl"))
    assert report["partial"] is True and report["summary"]["requests_sent"] == len(records) > 0
    # What the killed worker had in flight is journaled as failed, with the cause
    lost = [r for r in records if r.error is not None and r.error.kind == "worker_lost"]
    assert lost and len({r.request_id % 2 for r in lost}) == 1 and report["errors"]["worker_lost"] == len(lost)
    assert report["workers"]["lost"][0]["in_flight_failed"] == len(lost)
