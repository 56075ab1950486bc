"""loadgen's live metrics and the shipped dashboards against a real Prometheus: every PromQL
expression of every dashboard panel returns data while loadgen drives the emulated engines."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest

from .conftest import free_port
from .dashboards import expressions, load_dashboards

ENGINES = {"vllm": "/metrics", "sglang": "/metrics", "trtllm": "/prometheus/metrics", "llamacpp": "/metrics"}
#: the dashboards' TRT-LLM panels read the trtllm_* names, which TensorRT-LLM exports from 1.3 on
ENGINE_VERSIONS = {"trtllm": "1.3.0rc"}


def _run(url: str, metrics_port: int, out: Path, seconds: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "loadgen", "run", "--url", url, "--duration", str(seconds),
                             "-c", "4", "--max-tokens", "48", "--metrics-addr", f"127.0.0.1:{metrics_port}",
                             "--output-dir", str(out), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.timeout(240)
def test_every_dashboard_expression_returns_data(emulator, prometheus, tmp_path):
    emulators = {engine: emulator("--engine", engine, "--ttft-ms", "5", "--step-ms", "5",
                                  *(("--engine-version", ENGINE_VERSIONS[engine]) if engine in ENGINE_VERSIONS else ()))
                 for engine in ENGINES}
    metrics_port = free_port()
    jobs = {"loadgen": (f"127.0.0.1:{metrics_port}", "/metrics")}
    jobs |= {engine: (emu.url.removeprefix("http://"), ENGINES[engine]) for engine, emu in emulators.items()}
    prom = prometheus(jobs)
    # A short run against each engine but the last, then a long one against vLLM that is still going
    # while the expressions are evaluated (a finished run's series go stale in Prometheus). The short
    # runs go at once, each on its own metrics port: the engines' own series are what they leave.
    short = [_run(emulators[engine].url, free_port(), tmp_path / engine, 4)
             for engine in ("sglang", "trtllm", "llamacpp")]
    for proc in short:
        output, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, output.decode()
    live = _run(emulators["vllm"].url, metrics_port, tmp_path / "vllm", 40)
    try:
        _wait_for(lambda: prom.query('loadgen_tokens_per_step_count{engine="vllm"} > 0')["data"]["result"], 30,
                  "Prometheus to scrape the live run")
        time.sleep(6)  # a few more scrapes, so rates over the windows below have two points or more
        failures, count = [], 0
        for dashboard in load_dashboards():
            for title, expr in expressions(dashboard, {"__rate_interval": "30s", "__interval": "5s",
                                                        "__range": "5m"}):
                count += 1
                answer = prom.query(expr)
                if answer.get("status") != "success":
                    failures.append(f"{title}: {expr}: {answer.get('error')}")
                elif not answer["data"]["result"]:
                    failures.append(f"{title}: {expr}: no data")
        assert count > 20, "the dashboards hold fewer expressions than expected"
        assert not failures, f"{len(failures)} of {count} expressions failed:\n" + "\n".join(failures)
    finally:
        os.killpg(live.pid, signal.SIGINT)
        live.communicate(timeout=30)


def test_live_metrics_agree_with_the_report(emulator, prometheus, tmp_path):
    """What Prometheus scraped during the run adds up to what the report says."""
    emu = emulator("--ttft-ms", "5", "--step-ms", "5")
    metrics_port = free_port()
    prom = prometheus({"loadgen": (f"127.0.0.1:{metrics_port}", "/metrics")})
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "loadgen", "run", "--url", emu.url, "-n", "200", "-c", "4",
                             "--max-tokens", "64", "--workload", "random", "--metrics-addr",
                             f"127.0.0.1:{metrics_port}", "--output-dir", str(out), "--no-progress", "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for(lambda: prom.scrapes("loadgen") >= 1, 30, "a first scrape")
        scraped = []

        def totals_scraped() -> bool:
            result = prom.query("sum(loadgen_output_tokens_total)")["data"]["result"]
            if result:  # empty before the first scrape and once the ended run's series go stale
                scraped.append(float(result[0]["value"][1]))
            return proc.poll() is not None

        _wait_for(totals_scraped, 60, "the run to end")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, proc.stdout.read().decode()
    report = orjson.loads((out / "report.json").read_bytes())
    # The counter only grows, the last scrape before the end saw at most the final total, and the
    # run was scraped while in progress (200 requests x 64 tokens in total).
    assert all(a <= b for a, b in zip(scraped, scraped[1:]))
    assert 0 < max(scraped) <= report["summary"]["output_tokens"] == 200 * 64


def test_pushgateway_receives_the_final_figures(emulator, pushgateway, tmp_path):
    emu = emulator("--ttft-ms", "2", "--step-ms", "2")
    proc = subprocess.run([sys.executable, "-m", "loadgen", "run", "--url", emu.url, "-n", "20", "-c", "2",
                           "--max-tokens", "16", "--workload", "random", "--no-metrics", "--pushgateway", pushgateway,
                           "--output-dir", str(tmp_path / "out"), "--no-progress"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    body = urllib.request.urlopen(pushgateway + "/metrics", timeout=10).read().decode()
    lines = [line for line in body.splitlines() if line.startswith("loadgen_output_tokens_total{")]
    assert lines and all('job="loadgen"' in line and "run_id=" in line for line in lines)
    assert sum(float(line.rsplit(" ", 1)[1]) for line in lines) == 20 * 16, lines


def test_unreachable_pushgateway_is_one_line_after_the_report(emulator, tmp_path):
    emu = emulator("--ttft-ms", "2", "--step-ms", "2")
    proc = subprocess.run([sys.executable, "-m", "loadgen", "run", "--url", emu.url, "-n", "4", "-c", "2",
                           "--max-tokens", "8", "--workload", "random", "--no-metrics", "--pushgateway",
                           f"http://127.0.0.1:{free_port()}", "--output-dir", str(tmp_path / "out"), "--no-progress"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Pushgateway" in errors[0] and "Traceback" not in proc.stdout + proc.stderr
    assert (tmp_path / "out" / "report.json").exists()
