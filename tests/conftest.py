import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from loadgen.config import RunConfig
from loadgen.emulator.launch import EmulatorProcess
from loadgen.run import run


@pytest.fixture
def emulator() -> Iterator:
    """Start `loadgen emulate` with the given flags on a free loopback port; stopped at teardown."""
    started: list[EmulatorProcess] = []

    def start(*args: str) -> EmulatorProcess:
        emu = EmulatorProcess(list(args)).__enter__()
        started.append(emu)
        return emu

    yield start
    for emu in started:
        emu.stop()


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Each test session prepares workloads into its own cache, never the user's."""
    monkeypatch.setenv("LOADGEN_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def run_loadgen(tmp_path: Path):
    """Run a benchmark in-process; returns (report, console text)."""

    def go(**kwargs) -> tuple[dict, str]:
        buf = io.StringIO()
        kwargs.setdefault("output_dir", tmp_path / "out")
        kwargs.setdefault("progress", False)
        kwargs.setdefault("plots", False)  # drawn in the tests of the plots; seconds saved everywhere else
        kwargs.setdefault("workload", "random")  # exact accounting; text workloads have their own tests
        report = run(RunConfig(**kwargs), Console(file=buf, width=120))
        return report, buf.getvalue()

    return go
