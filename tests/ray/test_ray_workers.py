"""`loadgen run --ray`: the load workers as Ray actors on a real (loopback) Ray cluster, driving the
emulator. Accounting is exact, the figures match local worker processes, the clock offsets are
measured (one machine: the true offset is 0, so each estimate must lie within its own bound), and
a killed actor's requests in flight fail as worker_lost, the run stopping or going on as asked."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from loadgen.records import read_journal

from ..servers.conftest import dedent

ARGS = ["--workload", "random", "--max-tokens", "32", "--input-len", "64", "--no-metrics", "--no-plots",
        "--no-progress", "--emulator-ttft-ms", "20", "--emulator-step-ms", "10"]


def _run(tmp_path: Path, name: str, *args: str, timeout: float = 240) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / name
    proc = subprocess.run([sys.executable, "-m", "loadgen", "run", *ARGS, "--output-dir", str(out), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=tmp_path)
    report = orjson.loads((out / "report.json").read_bytes()) if (out / "report.json").exists() else {}
    return proc, report


def test_ray_workers_account_exactly_and_measure_their_clocks(ray_cluster, tmp_path):
    proc, report = _run(tmp_path, "ray", "--ray", ray_cluster, "--workers", "2", "-c", "8", "-n", "200")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = report["summary"]
    assert summary["requests_sent"] == summary["requests_completed"] == 200 and summary["requests_failed"] == 0
    assert summary["output_tokens"] == 200 * 32
    records = list(read_journal(tmp_path / "ray" / "requests.jsonl"))
    assert len(records) == 200 and len({r.request_id for r in records}) == 200
    workers = report["workers"]
    assert workers["ray"] == ray_cluster and workers["count"] == 2 and workers["lost"] == []
    for clock in workers["clocks"]:
        assert "Ray actor" in clock["where"]
        assert 0 < clock["error_bound_ns"] < 5_000_000
        assert abs(clock["offset_ns"]) <= clock["error_bound_ns"]  # one machine, one clock: the truth is 0
    # The records are on the driver's clock: every time lies inside the run, in order.
    assert all(r.scheduled_ns <= r.sent_ns <= r.first_ns <= r.last_ns <= r.end_ns for r in records)
    text = " ".join(proc.stdout.split())
    assert "Ray (" in text and "2 workers on 1 node(s)" in text


def test_ray_run_matches_local_worker_processes(ray_cluster, tmp_path):
    common = ["--workers", "2", "-c", "8", "-n", "160", "--seed", "3"]
    local_proc, local = _run(tmp_path, "local", *common)
    ray_proc, remote = _run(tmp_path, "ray", "--ray", ray_cluster, *common)
    assert local_proc.returncode == 0 and ray_proc.returncode == 0, ray_proc.stderr[-3000:]
    # Latencies within 25 %: Ray's own processes share this machine's cores with both runs, and a
    # machine under load moved the TTFT p50 by 17 %; a misapplied clock offset would move it by far more.
    for key in ("tpot_s", "ttft_s"):
        assert remote["latency"][key]["p50"] == pytest.approx(local["latency"][key]["p50"], rel=0.25), key
    assert remote["speculative"]["client"]["acceptance_length"] == pytest.approx(
        local["speculative"]["client"]["acceptance_length"], rel=0.05)
    assert remote["summary"]["output_tps"] == pytest.approx(local["summary"]["output_tps"], rel=0.25)
    assert "workers" in local and local["workers"]["ray"] is None
    assert all(c["error_bound_ns"] is None for c in local["workers"]["clocks"])  # the same clock: nothing to measure


def test_open_loop_over_ray_keeps_the_one_schedule(ray_cluster, tmp_path):
    proc, report = _run(tmp_path, "rate", "--ray", ray_cluster, "--workers", "2", "--request-rate", "40",
                        "--arrival", "constant", "-n", "60")
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = sorted(read_journal(tmp_path / "rate" / "requests.jsonl"), key=lambda r: r.scheduled_ns)
    gaps = [b.scheduled_ns - a.scheduled_ns for a, b in zip(records, records[1:])]
    # Constant arrivals 25 ms apart, dealt round-robin to two workers and moved back onto the
    # driver's clock: the merged schedule is regular to within the offsets' error bounds.
    bound = max(c["error_bound_ns"] for c in report["workers"]["clocks"])
    assert len(records) == 60
    assert all(abs(g - 25_000_000) <= 2 * bound + 1 for g in gaps)


def _kill_worker_when_running(tmp_path: Path, name: str, ray_cluster: str, *extra: str):
    """Start a long run on 2 Ray workers, kill actor w1 once records flow, return (proc, out dir)."""
    import ray

    out = tmp_path / name
    proc = subprocess.Popen([sys.executable, "-m", "loadgen", "run", *ARGS, "--output-dir", str(out), "--ray",
                             ray_cluster, "--workers", "2", "-c", "8", "-n", "600", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        journal = out / "requests.jsonl"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (journal.exists() and journal.read_bytes().count(b"\n") >= 40):
            time.sleep(0.1)
        assert journal.exists(), "the run never started"
        run_id = orjson.loads((out / "run.json").read_bytes())["config"]["run_id"]
        ray.init(address=ray_cluster, namespace="loadgen", log_to_driver=False, configure_logging=False)
        try:
            ray.kill(ray.get_actor(f"loadgen-{run_id}-w1"), no_restart=True)
        finally:
            ray.shutdown()
        proc.wait(180)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(60)
    return proc, out


def test_a_lost_worker_fails_its_requests_and_the_run_goes_on(ray_cluster, tmp_path):
    proc, out = _kill_worker_when_running(tmp_path, "continue", ray_cluster, "--on-worker-loss", "continue")
    stdout, stderr = proc.stdout.read(), proc.stderr.read()
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    report = orjson.loads((out / "report.json").read_bytes())
    summary = report["summary"]
    [lost] = report["workers"]["lost"]
    assert lost["worker"] == 1 and 1 <= lost["in_flight_failed"] <= 4  # worker 1 held 4 of the 8 streams
    assert report["errors"].get("worker_lost") == lost["in_flight_failed"] == summary["requests_failed"]
    assert summary["requests_completed"] + summary["requests_failed"] + summary["requests_cancelled"] == \
        summary["requests_sent"]
    # Worker 0 went on with its share (300 of the 600) to the end.
    records = list(read_journal(out / "requests.jsonl"))
    assert sum(1 for r in records if r.request_id % 2 == 0 and r.ok) == 300
    assert len(records) == summary["requests_sent"]
    text = " ".join(stdout.split())  # the console wraps at 80 columns
    assert "was lost" in text and "the run went on without it" in text


def test_a_lost_worker_stops_the_run_by_default(ray_cluster, tmp_path):
    proc, out = _kill_worker_when_running(tmp_path, "stop", ray_cluster)
    stderr = proc.stderr.read()
    assert proc.returncode == 2
    assert stderr.strip().splitlines()[-1].startswith("error: a load worker (Ray actor w1")
    assert "Traceback" not in stderr
    report = orjson.loads((out / "report.json").read_bytes())
    assert report["partial"]
    summary = report["summary"]
    assert report["errors"].get("worker_lost", 0) >= 1
    assert summary["requests_completed"] + summary["requests_failed"] + summary["requests_cancelled"] == \
        summary["requests_sent"] < 600


def test_sweep_over_ray(ray_cluster, tmp_path):
    out = tmp_path / "sweep"
    proc = subprocess.run([sys.executable, "-m", "loadgen", "sweep", "-c", "2,4", "--output-dir", str(out), *ARGS,
                           "--ray", ray_cluster, "--workers", "2", "-n", "24"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for point in ("c2", "c4"):
        report = orjson.loads((out / point / "report.json").read_bytes())
        assert report["workers"]["ray"] == ray_cluster and report["summary"]["requests_completed"] == 24


def test_matrix_over_ray(ray_cluster, fake_engines, tmp_path):
    """A plan's `run: {ray: ...}` puts every cell's load on the cluster's actors, against fake engines."""
    fake_engines.recipe("none", method="none")
    fake_engines.recipe("eagle3")
    plan = tmp_path / "plan.yaml"
    plan.write_text(dedent(f"""
        description: fake engines on a Ray cluster
        baseline: none
        recipes: [recipes/none.yaml, recipes/eagle3.yaml]
        workloads: [random]
        concurrencies: [4]
        run: {{ray: "{ray_cluster}", workers: 2, num_requests: 24, max_tokens: 32, no_progress: true,
               no_metrics: true, no_plots: true}}
        output_dir: {tmp_path / 'matrix'}
        serve: {{port: 0}}"""))
    proc = subprocess.run([sys.executable, "-m", "loadgen", "matrix", str(plan)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for label in ("none", "eagle3"):
        report = orjson.loads((tmp_path / "matrix" / label / "random" / "c4" / "report.json").read_bytes())
        assert report["workers"]["ray"] == ray_cluster and report["workers"]["count"] == 2
        assert report["summary"]["requests_completed"] == 24 and report["summary"]["output_tokens"] == 24 * 32
    [row] = [r for r in orjson.loads((tmp_path / "matrix" / "matrix.json").read_bytes())["rows"]
             if r["recipe"] == "eagle3"]
    assert row["user_tps_speedup"] > 1.5  # the emulated EAGLE-3 drafts reached the fake engine through the plan


def test_an_unreachable_cluster_is_one_line(tmp_path):
    pytest.importorskip("ray")
    proc, _ = _run(tmp_path, "x", "--ray", "127.0.0.1:1", "-n", "4")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: cannot reach the Ray cluster at 127.0.0.1:1")


def test_without_ray_installed_the_flag_says_how_to_get_it(monkeypatch):
    from loadgen.errors import UsageError
    from loadgen.ray_workers import RayLauncher

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(UsageError, match=r"pip install 'loadgen\[ray\]'"):
        RayLauncher("auto", "run")


def test_live_metrics_of_ray_workers_are_served_by_the_driver(ray_cluster, tmp_path):
    """Every actor's requests reach the driver's one /metrics while the run goes on."""
    import re
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "live"
    args = [a for a in ARGS if a != "--no-metrics"]
    proc = subprocess.Popen([sys.executable, "-m", "loadgen", "run", *args, "--output-dir", str(out), "--ray",
                             ray_cluster, "--workers", "2", "-c", "8", "-n", "400", "--metrics-addr",
                             f"127.0.0.1:{port}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    scrapes: list[tuple[float, float]] = []  # (ok requests, output tokens)
    try:
        deadline = time.monotonic() + 180
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            except OSError:
                time.sleep(0.2)
                continue
            ok = sum(map(float, re.findall(r'^loadgen_requests_total\{[^}]*outcome="ok"[^}]*\} (\S+)$', text, re.M)))
            tokens = sum(map(float, re.findall(r"^loadgen_output_tokens_total\{[^}]*\} (\S+)$", text, re.M)))
            scrapes.append((ok, tokens))
            time.sleep(0.3)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        proc.wait(60)
    assert proc.returncode == 0, proc.stderr.read()[-3000:]
    during = [s for s in scrapes if 0 < s[0] < 400]
    assert during, f"never scraped mid-run: {scrapes[-3:]}"
    assert all(tokens == ok * 32 for ok, tokens in scrapes)  # each finished request brought its 32 tokens
    assert all(a[0] <= b[0] for a, b in zip(scrapes, scrapes[1:]))
    assert max(ok for ok, _ in scrapes) > 200  # each actor sends 200: both reached the driver's metrics


def test_the_loopback_emulator_is_refused_on_a_cluster_of_several_nodes(ray_cluster, tmp_path, monkeypatch):
    import io

    from rich.console import Console

    import ray
    from loadgen.config import RunConfig
    from loadgen.errors import UsageError
    from loadgen.ray_workers import RayLauncher
    from loadgen.run import run

    monkeypatch.setattr(RayLauncher, "cluster", lambda self: {"nodes": 2, "cpus": 4})
    try:
        with pytest.raises(UsageError, match="out of reach of the other Ray nodes: give --url"):
            run(RunConfig(url=None, output_dir=tmp_path / "out", workload="random", num_requests=4, ray=ray_cluster,
                          progress=False, plots=False), Console(file=io.StringIO()))
    finally:
        ray.shutdown()
