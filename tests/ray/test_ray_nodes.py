"""`loadgen run --ray` over more than one node: the head at 127.0.0.2 (2 CPUs) and a one-CPU node
at 127.0.0.3 and up, each node a raylet of its own, all on loopback. The actors spread over both
nodes; a node whose processes are killed, or frozen as a hung or cut-off machine would be (no
connection closes then: Ray's health checks find it), costs exactly its worker's requests in
flight and the run goes on."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson

from loadgen.records import read_journal

from .cluster import strike_mid_run
from .test_ray_workers import ARGS


def _command(out: Path, cluster: str, url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "loadgen", "run", *ARGS, "--url", url, "--output-dir", str(out), "--ray", cluster,
            "--workers", "3", "-c", "12", *args]


def _emulator(emulator) -> str:
    return emulator("--ttft-ms", "20", "--step-ms", "10").url


def test_workers_spread_over_two_nodes(ray_cluster, ray_node, emulator, tmp_path):
    node = ray_node()
    out = tmp_path / "two"
    proc = subprocess.run(_command(out, ray_cluster, _emulator(emulator), "-n", "240"), capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = orjson.loads((out / "report.json").read_bytes())
    summary = report["summary"]
    assert summary["requests_completed"] == 240 and summary["output_tokens"] == 240 * 32
    records = list(read_journal(out / "requests.jsonl"))
    assert len({r.request_id for r in records}) == 240
    clocks = report["workers"]["clocks"]
    # 3 one-CPU actors on 2 + 1 CPUs: both nodes carry load, the added one exactly one worker.
    assert len({c["node"] for c in clocks}) == 2
    assert sum(f"({node.ip}," in c["where"] for c in clocks) == 1
    for clock in clocks:
        assert abs(clock["offset_ns"]) <= clock["error_bound_ns"] < 5_000_000  # one machine: the truth is 0
    assert "3 workers on 2 node(s)" in " ".join(proc.stdout.split())


def _lose_node_mid_run(tmp_path: Path, cluster: str, url: str, node, sig: int) -> tuple[dict, float]:
    """Start a run, wait for its first finished request, then signal every process of the node.
    Returns the report and the seconds from the signal to the run's end."""
    out = tmp_path / "lost"
    proc, struck_ns = strike_mid_run(_command(out, cluster, url, "-n", "900", "--on-worker-loss", "continue"),
                                     out / "requests.jsonl", node, sig, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return orjson.loads((out / "report.json").read_bytes()), (time.monotonic_ns() - struck_ns) / 1e9


def _check_the_loss(report: dict, journal: Path, node) -> dict:
    [lost] = report["workers"]["lost"]
    assert f"({node.ip}," in lost["where"]
    assert 1 <= lost["in_flight_failed"] <= 4  # the lost worker held 4 of the 12 streams
    summary = report["summary"]
    assert report["errors"] == {"worker_lost": lost["in_flight_failed"]} and summary["requests_failed"] == \
        lost["in_flight_failed"]
    assert summary["requests_completed"] + summary["requests_failed"] == summary["requests_sent"]
    # The two workers on the head went on with their shares (300 of the 900 each) to the end
    # (worker i of 3 numbers its requests i, i + 3, ...).
    records = list(read_journal(journal))
    assert len(records) == summary["requests_sent"]
    for worker in {0, 1, 2} - {lost["worker"]}:
        assert sum(1 for r in records if r.request_id % 3 == worker and r.ok) == 300
    return lost


def test_a_killed_node_fails_its_requests_and_the_run_goes_on(ray_cluster, ray_node, emulator, tmp_path):
    node = ray_node()
    report, _ = _lose_node_mid_run(tmp_path, ray_cluster, _emulator(emulator), node, signal.SIGKILL)
    _check_the_loss(report, tmp_path / "lost" / "requests.jsonl", node)


def test_a_node_that_goes_silent_is_found_by_rays_health_checks(ray_cluster, ray_node, emulator, tmp_path):
    """Frozen processes keep their connections open: only Ray's view of the node tells the driver."""
    node = ray_node()
    report, after_s = _lose_node_mid_run(tmp_path, ray_cluster, _emulator(emulator), node, signal.SIGSTOP)
    lost = _check_the_loss(report, tmp_path / "lost" / "requests.jsonl", node)
    assert "ActorDiedError" in lost["reason"]  # Ray's word on the actor: it died with its node
    assert after_s < 60  # health checks (3 x 0.5 s here), then the grace of 2 s, then the rest of the run
