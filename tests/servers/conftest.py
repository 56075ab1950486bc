"""Fake engine launchers on PATH (tests/servers/fakes): `vllm`, `trtllm-serve` and the module
`sglang.launch_server`, each starting the emulator with its engine's personality."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

FAKES = Path(__file__).with_name("fakes")


class FakeEngines:
    def __init__(self, record: Path, recipes: Path) -> None:
        self.record = record
        self.recipes = recipes

    def starts(self) -> list[dict]:
        """Every start of a fake engine so far: argv, TRT-LLM's options, CUDA_VISIBLE_DEVICES, pid."""
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines()]

    def recipe(self, name: str, engine: str = "vllm", method: str = "eagle3", **fields) -> Path:
        """Write a small recipe for ENGINE; fields (YAML-literal strings) override or add keys."""
        spec = {"none": "{method: none}",
                "eagle3": "{method: eagle3, draft_model: test/draft, num_speculative_tokens: 3}",
                "ngram": "{method: ngram, num_speculative_tokens: 2}"}[method]
        body = {"engine": engine, "engine_version": '"0.0-test"', "model": "test/model", "speculative": spec,
                "startup_timeout_s": "60", **fields}
        path = self.recipes / f"{name}.yaml"
        path.write_text("".join(f"{k}: {v}\n" for k, v in body.items()))
        return path


@pytest.fixture
def fake_engines(tmp_path: Path, monkeypatch) -> FakeEngines:
    monkeypatch.setenv("PATH", os.pathsep.join([str(FAKES), str(Path(sys.executable).parent), os.environ["PATH"]]))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(FAKES), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("FAKE_ENGINE_RECORD", str(tmp_path / "starts.jsonl"))
    monkeypatch.delenv("FAKE_ENGINE_MODE", raising=False)
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    return FakeEngines(tmp_path / "starts.jsonl", recipes)


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip()
