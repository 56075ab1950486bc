import io
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import orjson
import pytest
from rich.console import Console

from loadgen.analysis import Report, shipped_schema
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


#: the variables loadgen takes a proxy from (transport/proxy.py)
PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy",
                   "NO_PROXY")


@pytest.fixture(autouse=True)
def _no_proxy_environment(monkeypatch):
    """The tests talk to servers on loopback: a proxy set in the developer's environment would put
    itself between them (loadgen honours it); the proxy tests set their own."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


_REPORT_SCHEMA = jsonschema.Draft202012Validator(shipped_schema("report"))
_JOURNAL_SCHEMA = jsonschema.Draft202012Validator(shipped_schema("requests"))


def check_report_file(path: Path) -> None:
    """report.json validates against the shipped schema and reads back into a Report that writes
    the same JSON. A file that is not JSON at all is left to the test that wrote it (the error
    paths of `loadgen report` and compare)."""
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError:
        return
    _REPORT_SCHEMA.validate(data)
    assert Report.from_json(data).to_json() == data, f"{path} does not survive Report.from_json/to_json"


def check_journal_file(path: Path) -> None:
    """Every line of requests.jsonl validates against the shipped schema; only the last may be cut
    short (a run killed mid-write)."""
    lines = path.read_bytes().splitlines()
    for number, line in enumerate(lines, 1):
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            assert number == len(lines), f"{path}:{number} is not JSON and not the last line"
            continue
        _JOURNAL_SCHEMA.validate(record)


@pytest.fixture(autouse=True)
def _outputs_match_their_schemas(tmp_path: Path) -> Iterator[None]:
    """After each test, every report.json and requests.jsonl it left under its tmp_path (runs,
    sweep points, matrix cells, rebuilt reports, CLI subprocesses alike) is checked against
    loadgen/schemas/: a field the code writes but the schema lacks, or the reverse, fails here."""
    yield
    for path in tmp_path.rglob("report.json"):
        check_report_file(path)
    for path in tmp_path.rglob("requests.jsonl"):
        check_journal_file(path)


@pytest.fixture
def run_loadgen(tmp_path: Path):
    """Run a benchmark in-process; returns (report as report.json holds it, console text)."""

    def go(**kwargs) -> tuple[dict, str]:
        buf = io.StringIO()
        kwargs.setdefault("output_dir", tmp_path / "out")
        kwargs.setdefault("progress", False)
        kwargs.setdefault("plots", False)  # drawn in the tests of the plots; seconds saved everywhere else
        kwargs.setdefault("workload", "random")  # exact accounting; text workloads have their own tests
        report = run(RunConfig(**kwargs), Console(file=buf, width=120))
        return report.to_json(), buf.getvalue()

    return go
