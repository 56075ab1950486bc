"""A real Ray cluster on loopback for the distributed tests: `ray start --head` with 2 CPUs (the
workers' actors take one each), stopped after the session. Without Ray installed the tests skip,
unless LOADGEN_REQUIRE_RAY=1 (as in CI), where that is a failure."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REQUIRE_ENV = "LOADGEN_REQUIRE_RAY"


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
    env = dict(os.environ)
    start = subprocess.run([ray_bin, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                            "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats",
                            "--temp-dir", str(temp)], capture_output=True, text=True, timeout=180, env=env)
    if start.returncode != 0:
        pytest.fail(f"ray start failed:\n{start.stdout[-2000:]}\n{start.stderr[-2000:]}", pytrace=False)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray_bin, "stop", "--force"], capture_output=True, timeout=120, env=env)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
