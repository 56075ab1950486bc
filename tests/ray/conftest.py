"""A real Ray cluster on loopback for the distributed tests: `ray start --head` with 2 CPUs (the
workers' actors take one each), stopped after the session, and more nodes on other loopback
addresses where a test needs them. Without Ray installed the tests skip, unless LOADGEN_REQUIRE_RAY=1
(as in CI), where that is a failure.

Ray replaces a node address of 127.0.0.1 (and localhost) with the machine's network address, so
the nodes take 127.0.0.2 and up: other loopback addresses, which Ray keeps. Every byte of the
cluster, and of the actors' connections back to the driver, stays on loopback."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REQUIRE_ENV = "LOADGEN_REQUIRE_RAY"
HEAD_IP = "127.0.0.2"
#: the head's health checks, faster than Ray's defaults (3 s x 5) so a node that goes silent is
#: declared dead within seconds
HEALTH_CHECKS = {"RAY_health_check_period_ms": "500", "RAY_health_check_timeout_ms": "500",
                 "RAY_health_check_failure_threshold": "3"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory) -> str:
    """The address (HOST:PORT) of a one-node Ray cluster with 2 CPUs."""
    try:
        import ray  # noqa: F401
    except ImportError:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"ray is not installed ({REQUIRE_ENV}=1): pip install -e '.[dev,ray]'", pytrace=False)
        pytest.skip("ray is not installed (pip install -e '.[dev,ray]')")
    ray_bin = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    port = _free_port()
    temp = tmp_path_factory.mktemp("ray")
    # A loopback cluster needs no token; set explicitly, so a ~/.ray/auth_token that an earlier
    # `ray.init()` left cannot make the cluster and the drivers (the runs under test) disagree.
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_USAGE_STATS_ENABLED")}
    os.environ.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    env = dict(os.environ, **HEALTH_CHECKS)
    start = subprocess.run([ray_bin, "start", "--head", "--node-ip-address", HEAD_IP, "--port", str(port),
                            "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats",
                            "--temp-dir", str(temp)], capture_output=True, text=True, timeout=180, env=env)
    if start.returncode != 0:
        pytest.fail(f"ray start failed:\n{start.stdout[-2000:]}\n{start.stderr[-2000:]}", pytrace=False)
    try:
        yield f"{HEAD_IP}:{port}"
    finally:
        subprocess.run([ray_bin, "stop", "--force"], capture_output=True, timeout=120, env=env)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class RayNode:
    """One more node of the cluster, on its own loopback address: its processes can be killed or
    frozen together, as when a machine dies or hangs."""

    def __init__(self, head: str, ip: str, ray_bin: str) -> None:
        self.head, self.ip = head, ip
        self.process = subprocess.Popen([ray_bin, "start", "--address", head, "--node-ip-address", ip,
                                         "--num-cpus", "1", "--disable-usage-stats", "--block"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
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
                pytest.fail(f"Ray node {self.ip} did not {what} within {timeout:g} s", pytrace=False)
            time.sleep(0.5)


def alive_nodes(head: str) -> list[str]:
    """The addresses of the cluster's alive nodes, as its head (GCS) sees them. Ray's public state
    API goes through the dashboard, which this cluster runs without: the GCS client is asked."""
    from ray._raylet import GcsClient  # noqa: PLC0415 - ray is optional

    alive = 0  # GcsNodeInfo.GcsNodeState.ALIVE
    return [n.node_manager_address for n in GcsClient(address=head).get_all_node_info(timeout=10).values()
            if n.state == alive]


#: the next node's address (a removed node's is not used again)
_next_ip = itertools.count(3)


@pytest.fixture
def ray_node(ray_cluster):
    """Adds one-CPU nodes at 127.0.0.3, .4, ... to the cluster; each killed and gone after the test."""
    ray_bin = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    nodes: list[RayNode] = []

    def add() -> RayNode:
        nodes.append(RayNode(ray_cluster, f"127.0.0.{next(_next_ip)}", ray_bin))
        return nodes[-1]

    try:
        yield add
    finally:
        for node in nodes:
            node.remove()
