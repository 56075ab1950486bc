"""Fixtures for tests against a real engine: llama.cpp's `llama-server` (CPU), with speculative decoding.

The binary comes from `scripts/build_llama_server.sh` (run it once; ~8-10 min, then cached). These
fixtures never build it: without it the tests skip, unless LOADGEN_REQUIRE_LLAMACPP=1 (as in CI),
where a missing binary is a failure. The models are tiny random-weight llamas carrying the real
Llama-3 vocabulary and the Llama-3.1 chat template (make_model.py), made once and cached.

    def test_x(llama_server):
        srv = llama_server(spec_rates="0.8,0.6,0.4", draft_n=3)   # fresh server, stopped after the test
        urllib.request.urlopen(srv.url + "/metrics")
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from loadgen.servers.process import free_port

from ..real_engines import unavailable
from .make_model import make_model, make_tokenizer

#: llama-cpp-python sdist version whose vendored llama.cpp is built (as in scripts/build_llama_server.sh)
LLAMA_CPP_PYTHON_VERSION = os.environ.get("LOADGEN_LLAMA_CPP_PYTHON_VERSION", "0.3.36")
VOCAB_FILE = "ggml-vocab-llama-bpe.gguf"
TEMPLATE_FILE = "meta-llama-Llama-3.1-8B-Instruct.jinja"
REQUIRE_ENV = "LOADGEN_REQUIRE_LLAMACPP"
_BUILD_HINT = "build it with scripts/build_llama_server.sh (~8-10 min once, then cached)"


def llama_dir() -> Path:
    """Where scripts/build_llama_server.sh leaves the binary, the vocab GGUF and the chat template."""
    default = Path.home() / ".cache" / "loadgen" / f"llama-server-{LLAMA_CPP_PYTHON_VERSION}"
    return Path(os.environ.get("LOADGEN_LLAMA_DIR") or default)


@dataclass(frozen=True)
class LlamaModels:
    """The files a llama-server test needs. `target` (2 layers, seed 0) and `draft` (1 layer, seed 1)
    share the vocabulary; `tokenizer` is the Hugging Face folder for it (pass it as `--tokenizer`)."""

    target: Path
    draft: Path
    vocab: Path
    template: Path
    tokenizer: Path


@dataclass
class LlamaServer:
    """A running llama-server: `url` is its root (no /v1); `log` holds its stdout and stderr."""

    url: str
    port: int
    proc: subprocess.Popen
    log: Path
    args: tuple[str, ...]
    _log_file: object = field(default=None, repr=False)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; idempotent."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):  # refused while starting; 503 while loading the model
        return False


def start_llama_server(binary: Path, models: LlamaModels, log_dir: Path, *, spec_rates: str | None = "0.8,0.6,0.4",
                       draft_n: int = 3, parallel: int = 4, ctx: int = 8192, extra_args: Sequence[str] = (),
                       start_timeout_s: float = 60.0) -> LlamaServer:
    """Start llama-server on a free loopback port and wait for GET /health == 200.

    draft_n > 0: speculative decoding with the draft model, `draft_n` tokens per draft; with
    `spec_rates` ("p0,p1,...", unconditional per-position acceptance, so AL = 1 + sum) the
    acceptance is synthetic and known, with None it is whatever the random draft model earns.
    draft_n = 0: no speculative decoding. Fails with the log's tail if the server does not come up.
    """
    spec: list[str] = []
    if draft_n > 0:
        spec = ["-md", str(models.draft), "--spec-type", "draft-simple", "--spec-draft-n-max", str(draft_n)]
        if spec_rates:
            spec += ["--spec-synth-rates", spec_rates]
    # llama-server reads every flag from LLAMA_ARG_* too: none may leak in from the caller's shell
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLAMA_ARG_")}
    for attempt in range(3):  # the free port may be taken between probing and binding
        port = free_port()
        args = (str(binary), "-m", str(models.target), *spec, "--host", "127.0.0.1", "--port", str(port),
                "-c", str(ctx), "-np", str(parallel), "-t", "2", "--metrics", "--no-warmup", *extra_args)
        log = log_dir / f"llama-server-{port}.log"
        log_file = open(log, "wb")  # noqa: SIM115 - closed by LlamaServer.stop
        log_file.write((" ".join(args) + "\n").encode())
        log_file.flush()
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)  # a Ctrl-C on pytest does not reach it first
        server = LlamaServer(f"http://127.0.0.1:{port}", port, proc, log, args, log_file)
        deadline = time.monotonic() + start_timeout_s
        while time.monotonic() < deadline and proc.poll() is None:
            if _healthy(server.url):
                return server
            time.sleep(0.1)
        running = proc.poll() is None
        server.stop()
        tail = server.log_tail()
        if not running and "bind" in tail.lower() and attempt < 2:
            continue
        why = f"did not answer /health within {start_timeout_s:.0f} s" if running else f"exited with {proc.returncode}"
        pytest.fail(f"llama-server {why}; log {log}:\n{tail}", pytrace=False)
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def llama_server_bin() -> Path:
    """The built llama-server binary; skips (fails under LOADGEN_REQUIRE_LLAMACPP=1) when it is missing."""
    binary = llama_dir() / "llama-server"
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        unavailable(f"llama-server not found at {binary}: {_BUILD_HINT}", REQUIRE_ENV)
    for name in (VOCAB_FILE, TEMPLATE_FILE):
        if not (llama_dir() / name).is_file():
            unavailable(f"{name} missing beside {binary}: {_BUILD_HINT}", REQUIRE_ENV)
    return binary


def _models_key(vocab: Path, template: Path) -> str:
    """Changes whenever the generator, the vocabulary or the template does."""
    h = hashlib.sha256()
    for f in (Path(__file__).with_name("make_model.py"), vocab, template):
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


@pytest.fixture(scope="session")
def llama_models(llama_server_bin: Path) -> LlamaModels:
    """Target and draft GGUF and the matching HF tokenizer folder, made once (~10 s) and cached in
    $LOADGEN_LLAMA_MODELS_DIR (default ~/.cache/loadgen/llamacpp-models/<hash of make_model.py,
    vocab, template>), so later sessions reuse them."""
    try:
        import gguf  # noqa: F401
    except ImportError:
        unavailable("the `gguf` package is missing (pip install '.[dev]')", REQUIRE_ENV)
    vocab, template = llama_dir() / VOCAB_FILE, llama_dir() / TEMPLATE_FILE
    base = Path(os.environ.get("LOADGEN_LLAMA_MODELS_DIR") or Path.home() / ".cache" / "loadgen" / "llamacpp-models")
    folder = base / _models_key(vocab, template)
    models = LlamaModels(folder / "target.gguf", folder / "draft.gguf", vocab, template, folder / "tokenizer")
    if not models.target.is_file():
        make_model(vocab, models.target, layers=2, seed=0, untied=3.0, template=template)
    if not models.draft.is_file():
        make_model(vocab, models.draft, layers=1, seed=1, untied=3.0, template=template)
    if not (models.tokenizer / "tokenizer_config.json").is_file():  # written last
        make_tokenizer(vocab, models.tokenizer, template=template)
    return models


@pytest.fixture(scope="session")
def llama_tokenizer_dir(llama_models: LlamaModels) -> Path:
    """Hugging Face tokenizer folder (Llama-3 vocab, Llama-3.1 chat template) matching the models."""
    return llama_models.tokenizer


ServerFactory = Callable[..., LlamaServer]


@contextlib.contextmanager
def _servers(binary: Path, models: LlamaModels, log_dir: Path, *, reuse: bool) -> Iterator[ServerFactory]:
    started: dict[tuple, LlamaServer] = {}

    def start(spec_rates: str | None = "0.8,0.6,0.4", draft_n: int = 3, parallel: int = 4, ctx: int = 8192,
              extra_args: Sequence[str] = ()) -> LlamaServer:
        key = (spec_rates, draft_n, parallel, ctx, tuple(extra_args))
        if reuse and key in started and started[key].proc.poll() is None:
            return started[key]
        server = start_llama_server(binary, models, log_dir, spec_rates=spec_rates, draft_n=draft_n,
                                    parallel=parallel, ctx=ctx, extra_args=extra_args)
        started[key if reuse else (len(started),)] = server
        return server

    try:
        yield start
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture
def llama_server(llama_server_bin: Path, llama_models: LlamaModels, tmp_path_factory) -> Iterator[ServerFactory]:
    """`llama_server(spec_rates="0.8,0.6,0.4", draft_n=3, parallel=4, ctx=8192, extra_args=())` starts a
    fresh server (its counters start at zero) and returns a LlamaServer; every one is stopped when
    the test ends."""
    with _servers(llama_server_bin, llama_models, tmp_path_factory.mktemp("llama-server"), reuse=False) as start:
        yield start


@pytest.fixture(scope="session")
def llama_server_shared(llama_server_bin: Path, llama_models: LlamaModels, tmp_path_factory) -> Iterator[ServerFactory]:
    """Same signature as `llama_server`, but one server per set of arguments for the whole session,
    shared between tests: for tests that only read (tokenize, template), not for counting metrics."""
    with _servers(llama_server_bin, llama_models, tmp_path_factory.mktemp("llama-server"), reuse=True) as start:
        yield start
