"""Real Prometheus (and Pushgateway) servers for the telemetry tests: the Debian packages'
binaries, started on free loopback ports with a temporary config and storage, stopped at
teardown. Without the binaries the tests skip, unless LOADGEN_REQUIRE_PROMETHEUS=1 (as in CI,
whose .ci/run installs them), where they fail instead."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

REQUIRE_ENV = "LOADGEN_REQUIRE_PROMETHEUS"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        reason = f"{name} is not installed (Debian package {name}; .ci/run installs it)"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{reason} ({REQUIRE_ENV}=1)", pytrace=False)
        pytest.skip(reason)
    return path


def _wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    raise RuntimeError(f"{proc.args[0]} not ready in {timeout_s} s: {log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Prometheus:
    """A running Prometheus and its HTTP API."""

    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str, at: float | None = None) -> dict:
        params = {"query": expr} | ({"time": f"{at:.3f}"} if at is not None else {})
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}", timeout=10) as r:
                return orjson.loads(r.read())
        except urllib.error.HTTPError as exc:  # a bad expression: 400 with the error in the body
            return orjson.loads(exc.read())

    def wait_scraping(self, timeout_s: float = 30.0) -> None:
        """Until every target has been scraped once (up or down): Prometheus starts scraping a few
        seconds after it is ready (its discovery updates are throttled)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"{self.url}/api/v1/targets", timeout=10) as r:
                targets = orjson.loads(r.read())["data"]["activeTargets"]
            if targets and all(t["health"] != "unknown" for t in targets):
                return
            time.sleep(0.2)
        raise RuntimeError(f"Prometheus did not start scraping within {timeout_s} s")

    def scrapes(self, job: str) -> int:
        """Successful scrapes of a job in the last minute."""
        result = self.query(f'sum_over_time(up{{job="{job}"}}[1m])')["data"]["result"]
        return int(float(result[0]["value"][1])) if result else 0


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator:
    """start(jobs) with jobs {name: (host:port, metrics_path)}: Prometheus scraping each every second."""
    binary = _binary("prometheus")
    procs: list[subprocess.Popen] = []

    def start(jobs: dict[str, tuple[str, str]]) -> Prometheus:
        config = ["global:", "  scrape_interval: 1s", "  scrape_timeout: 1s", "scrape_configs:"]
        for job, (target, path) in jobs.items():
            config += [f"  - job_name: {job}", f"    metrics_path: {path}",
                       "    static_configs:", f"      - targets: ['{target}']"]
        (tmp_path / "prometheus.yml").write_text("\n".join(config) + "\n")
        port = free_port()
        log = tmp_path / "prometheus.log"
        proc = subprocess.Popen([binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}",
                                 "--log.level=warn"], stdout=open(log, "wb"), stderr=subprocess.STDOUT)
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url + "/-/ready", proc, log)
        prom = Prometheus(url)
        prom.wait_scraping()
        return prom

    yield start
    for proc in procs:
        _stop(proc)


@pytest.fixture
def pushgateway(tmp_path: Path) -> Iterator[str]:
    """A running Pushgateway; yields its URL."""
    binary = _binary("prometheus-pushgateway")
    port = free_port()
    log = tmp_path / "pushgateway.log"
    # Debian's build persists pushes to /var/lib by default: keep this one's in the test's folder
    proc = subprocess.Popen([binary, f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
                             f"--persistence.file={tmp_path / 'pushgateway.data'}"],
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url + "/-/ready", proc, log)
        yield url
    finally:
        _stop(proc)
