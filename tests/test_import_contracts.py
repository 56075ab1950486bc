"""The direction of imports, as pyproject.toml's [tool.importlinter] contracts state it: the
pipeline flows one way (workloads -> scheduler -> transport, engines -> records -> analysis -> sinks,
then workers, the run, studies and the CLI above it); engines/ never imports servers/ or the
emulator; config imports nothing of loadgen but errors."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]


def test_every_import_contract_is_kept(monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT))  # the tree under test, whatever is installed
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        status = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True)
    assert status == 0, output.getvalue()
