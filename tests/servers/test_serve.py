"""`loadgen serve` against fake engine launchers: the rendered command reaches the engine, readiness
means a served completion, teardown leaves nothing of the process group, a crash is one error."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest

from loadgen.errors import ServerError
from loadgen.servers import ServerProcess, load_recipe
from loadgen.servers.process import group_alive, group_members

from ..serving import wait_ready


@pytest.fixture
def serve_cli():
    """`serve_cli(*args, cwd=...)` starts `loadgen serve` (its own session, as from a terminal); any
    still running at teardown (a failed test) is stopped with its server."""
    started: list[subprocess.Popen] = []

    def start(*args: str, cwd: Path) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "loadgen", "serve", *args], cwd=cwd, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # serve stops its server on SIGTERM
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def _completion(url: str) -> dict:
    body = orjson.dumps({"model": "test/model", "prompt": [1, 2, 3], "max_tokens": 4})
    req = urllib.request.Request(url + "/v1/completions", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return orjson.loads(resp.read())


@pytest.mark.parametrize("engine", ["vllm", "sglang", "trtllm"])
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_serve_starts_the_rendered_command_waits_until_it_serves_and_stops_its_group(
        fake_engines, serve_cli, tmp_path, engine, stop_signal):
    recipe = fake_engines.recipe("r", engine=engine, max_model_len="4096", gpu_memory_fraction="0.8")
    proc = serve_cli(str(recipe), "--port", "0", "--gpus", "3", "--log", str(tmp_path / "server.log"), cwd=tmp_path)
    url, lines = wait_ready(proc)
    # What the engine was given is what --dry-run prints for this recipe (bar the port and temp dir).
    [start] = fake_engines.starts()
    assert start["engine"] == engine and start["cuda_visible_devices"] == "3"
    launch_line = next(line for line in lines if line.startswith("r: "))
    printed = shlex.split(launch_line.split(": ", 1)[1])
    assert printed[-len(start["argv"]):] == start["argv"]
    if engine == "trtllm":  # the options file was written, and says what loadgen needs
        options = start["options"]
        assert options["enable_iter_perf_stats"] and options["return_perf_metrics"]
        assert options["speculative_config"]["decoding_type"] == "Eagle"
        options_file = Path(start["argv"][start["argv"].index("--extra_llm_api_options") + 1])
        assert options_file.is_file()
    # Ready means a completion is served, and /v1/models names the engine.
    assert _completion(url)["choices"]
    pgid = start["pid"]
    assert group_alive(pgid)
    proc.send_signal(stop_signal)
    assert proc.wait(30) == 0
    assert not group_alive(pgid), "the server's process group outlived loadgen serve"
    if engine == "trtllm":
        assert not options_file.exists()  # the temp dir went with the server
    log = (tmp_path / "server.log").read_text()
    assert f"fake {engine}: loading test/model" in log


def test_serve_reports_a_crash_during_start_up_as_one_error_with_the_log_tail(fake_engines, serve_cli, tmp_path):
    recipe = fake_engines.recipe("crashy", env="{FAKE_ENGINE_MODE: crash}")
    proc = serve_cli(str(recipe), "--port", "0", "--log", str(tmp_path / "s.log"), cwd=tmp_path)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in err
    first, *tail = err.strip().splitlines()
    assert first.startswith("error: crashy (vllm) exited with status 1 during start-up")
    assert str(tmp_path / "s.log") in first
    assert any("CUDA out of memory" in line for line in tail)


def test_serve_gives_up_after_the_startup_timeout_and_stops_the_server(fake_engines, serve_cli, tmp_path):
    recipe = fake_engines.recipe("stuck", env="{FAKE_ENGINE_MODE: never_ready}")
    started = time.monotonic()
    proc = serve_cli(str(recipe), "--port", "0", "--startup-timeout", "2", "--grace", "2", cwd=tmp_path)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "Traceback" not in err
    assert "stuck was not ready after 2 s (still waiting for /health" in err
    assert "fake vllm: loading test/model (mode never_ready)" in err
    assert time.monotonic() - started < 30
    assert not group_alive(fake_engines.starts()[0]["pid"])


def test_ready_waits_through_503s_until_a_completion_is_served(fake_engines, tmp_path):
    recipe = load_recipe(fake_engines.recipe("slow", env="{FAKE_ENGINE_MODE: slow}"))
    phases: list[str] = []
    with ServerProcess(recipe, log_path=tmp_path / "s.log", port=0, on_wait=phases.append) as server:
        assert server.ready.startup_s >= 1.5  # the emulator answers 503 for 1.5 s
        assert _completion(server.url)["choices"]
        assert server.ready.model == "test/model"
        pgid = server.pgid
    assert phases[0] == "/health"
    assert not group_alive(pgid)


def test_a_server_whose_health_is_fine_but_cannot_complete_is_not_ready(fake_engines, tmp_path):
    recipe = load_recipe(fake_engines.recipe("nocomplete", env="{FAKE_ENGINE_MODE: no_completions}"))
    phases: list[str] = []
    server = ServerProcess(recipe, log_path=tmp_path / "s.log", port=0, startup_timeout_s=2, grace_s=2,
                           on_wait=phases.append)
    with pytest.raises(ServerError, match="not ready after 2 s .still waiting for a one-token completion"):
        server.__enter__()
    assert phases == ["/health", "a one-token completion"]
    assert not group_alive(fake_engines.starts()[0]["pid"])


def test_stop_kills_a_server_that_ignores_sigterm_after_the_grace_period(fake_engines, tmp_path):
    recipe = load_recipe(fake_engines.recipe("stubborn", env="{FAKE_ENGINE_MODE: stubborn}"))
    server = ServerProcess(recipe, log_path=tmp_path / "s.log", port=0, grace_s=1.0).__enter__()
    pgid = server.pgid
    started = time.monotonic()
    try:
        server.stop()
        assert 1.0 <= time.monotonic() - started < 10
    finally:
        server.stop()
    assert not group_alive(pgid)


def test_stop_leaves_no_child_of_the_server_behind(fake_engines, tmp_path):
    """An engine whose worker ignores SIGTERM while the main process exits: the worker is killed too."""
    recipe = load_recipe(fake_engines.recipe("orphaning", env="{FAKE_ENGINE_MODE: orphan}"))
    with ServerProcess(recipe, log_path=tmp_path / "s.log", port=0, grace_s=1.0) as server:
        pgid = server.pgid
        assert len(group_members(pgid)) >= 2  # the engine and its worker
    assert not group_alive(pgid)


def test_dry_run_prints_the_command_and_the_options_file_and_starts_nothing(fake_engines, tmp_path):
    recipe = fake_engines.recipe("t", engine="trtllm", max_num_seqs="64")
    out = subprocess.run([sys.executable, "-m", "loadgen", "serve", str(recipe), "--dry-run", "--gpus", "0,1"],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "export CUDA_VISIBLE_DEVICES=0,1" in text
    assert "enable_iter_perf_stats: true" in text and "decoding_type: Eagle\n" in text
    command = text.strip().splitlines()[-1]
    assert command.startswith("trtllm-serve test/model --backend pytorch") and "--max_batch_size 64" in command
    assert fake_engines.starts() == []


@pytest.mark.parametrize("args, message", [
    (["--gpus", "0"], "--gpus 0 names 1 GPU(s) but r needs tensor_parallel_size 2"),
    (["--set", "speculative.method=medusa"], "speculative.method 'medusa' is not one of"),
    (["--set", "executable=/nonexistent/vllm"], "/nonexistent/vllm not found: install vllm 0.0-test"),
    (["--engine", "sglang"], "r is a vllm recipe, not sglang"),
])
def test_bad_recipe_use_is_one_line(fake_engines, tmp_path, args, message):
    recipe = fake_engines.recipe("r", tensor_parallel_size="2")
    out = subprocess.run([sys.executable, "-m", "loadgen", "serve", str(recipe), "--port", "0", *args],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and message in out.stderr, out.stderr
    assert fake_engines.starts() == []


def test_a_port_already_served_is_refused_before_starting(fake_engines, emulator, tmp_path):
    """An earlier server still up there would answer the readiness probes in the new one's place."""
    busy = emulator()
    port = busy.url.rsplit(":", 1)[1]
    recipe = fake_engines.recipe("r")
    out = subprocess.run([sys.executable, "-m", "loadgen", "serve", str(recipe), "--port", port],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip() == f"error: port {port} on 127.0.0.1 is in use (another server still up?): stop it, " \
                                 "or pass --port"
    assert fake_engines.starts() == []


def test_shell_entry_point_runs_the_same_code(fake_engines, tmp_path):
    recipe = fake_engines.recipe("r", engine="sglang")
    script = Path(__file__).resolve().parents[2] / "servers" / "sglang.sh"
    out = subprocess.run([str(script), str(recipe), "--dry-run"], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "-m sglang.launch_server --model-path test/model" in out.stdout
    wrong = subprocess.run([str(Path(script).with_name("vllm.sh")), str(recipe), "--dry-run"], capture_output=True,
                           text=True, timeout=60, cwd=tmp_path)
    assert wrong.returncode == 2 and "is a sglang recipe, not vllm" in wrong.stderr
