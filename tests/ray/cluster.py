"""A Ray cluster on loopback, for the tests and benchmarks/ray_cluster.py: a head and more nodes,
each a raylet of its own on its own loopback address, whose processes can be killed or frozen
together as when a machine dies or hangs.

Ray replaces a node address of 127.0.0.1 (and localhost) with the machine's network address, so
the nodes take 127.0.0.2 and up: other loopback addresses, which Ray keeps. Every byte of the
cluster, and of the actors' connections back to a driver, stays on loopback."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HEAD_IP = "127.0.0.2"
#: the head's health checks, faster than Ray's defaults (3 s x 5) so a node that goes silent is
#: declared dead within seconds
HEALTH_CHECKS = {"RAY_health_check_period_ms": "500", "RAY_health_check_timeout_ms": "500",
                 "RAY_health_check_failure_threshold": "3"}
#: for the cluster and its drivers: no usage reports, and no token (a ~/.ray/auth_token that an
#: earlier `ray.init()` left must not make the cluster and the drivers disagree)
ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def ray_bin() -> str:
    return shutil.which("ray") or str(Path(sys.executable).with_name("ray"))


def start_head(temp: Path, cpus: int = 2) -> str:
    """`ray start --head` on HEAD_IP with a free port; returns its address (HOST:PORT)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = subprocess.run([ray_bin(), "start", "--head", "--node-ip-address", HEAD_IP, "--port", str(port),
                            "--num-cpus", str(cpus), "--include-dashboard", "false", "--disable-usage-stats",
                            "--temp-dir", str(temp)], capture_output=True, text=True, timeout=180,
                           env=dict(os.environ, **ENV, **HEALTH_CHECKS))
    if start.returncode != 0:
        raise RuntimeError(f"ray start failed:\n{start.stdout[-2000:]}\n{start.stderr[-2000:]}")
    return f"{HEAD_IP}:{port}"


def stop_all() -> None:
    """`ray stop --force`: every Ray process of this machine."""
    subprocess.run([ray_bin(), "stop", "--force"], capture_output=True, timeout=120, env=dict(os.environ, **ENV))


class RayNode:
    """One more node of the cluster, on its own loopback address: its processes can be killed or
    frozen together, as when a machine dies or hangs."""

    def __init__(self, head: str, ip: str) -> None:
        self.head, self.ip = head, ip
        self.process = subprocess.Popen([ray_bin(), "start", "--address", head, "--node-ip-address", ip,
                                         "--num-cpus", "1", "--disable-usage-stats", "--block"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                        env=dict(os.environ, **ENV))
        self._wait(lambda: ip in alive_nodes(head), "join")

    def pids(self) -> list[int]:
        """Every process of this node: `ray start`, what it started (raylet, agents) and what they
        started (the actors' worker processes, in sessions of their own and renamed, so found by parent)."""
        parents = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
        found = {self.process.pid}
        while grown := {pid for pid, parent in parents.items() if parent in found} - found:
            found |= grown
        return sorted(found)

    def signal_all(self, sig: int) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def remove(self) -> None:
        """Gone for good, and the head knows it (the tests after this one see one node)."""
        self.signal_all(signal.SIGKILL)  # also a frozen (SIGSTOPped) process
        self.process.wait(30)
        self._wait(lambda: self.ip not in alive_nodes(self.head), "be declared dead")

    def _wait(self, condition, what: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise RuntimeError(f"Ray node {self.ip} did not {what} within {timeout:g} s")
            time.sleep(0.5)


def alive_nodes(head: str) -> list[str]:
    """The addresses of the cluster's alive nodes, as its head (GCS) sees them. Ray's public state
    API goes through the dashboard, which this cluster runs without: the GCS client is asked."""
    from ray._raylet import GcsClient  # noqa: PLC0415 - ray is optional

    alive = 0  # GcsNodeInfo.GcsNodeState.ALIVE
    return [n.node_manager_address for n in GcsClient(address=head).get_all_node_info(timeout=10).values()
            if n.state == alive]


def strike_mid_run(command: list[str], journal: Path, node: RayNode, sig: int, *, delay_s: float = 0.0,
                   timeout: float = 150, cwd: Path | None = None) -> tuple[subprocess.CompletedProcess, int]:
    """Start a loadgen run, wait for its first journaled request (and delay_s more), then send sig to
    every process of the node. Returns the finished run and the monotonic time of the strike (ns, the
    clock the driver's records are on). A run still going at the timeout is killed, never left behind."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
    try:
        deadline = time.monotonic() + 120
        while not (journal.exists() and journal.stat().st_size) and proc.poll() is None and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(delay_s)
        struck_ns = time.monotonic_ns()
        node.signal_all(sig)
        stdout, stderr = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:  # a run that hangs on the lost node must not outlive its caller
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr), struck_ns
