"""Workloads end to end: the default offline sample, the workloads commands, and bad input."""

import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loadgen.workloads import SAMPLE_PATH
from loadgen.workloads.sources import SPEED_CATEGORIES, SPEED_PLACEHOLDER

from .test_bad_input import assert_one_line_error


def loadgen(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loadgen", *args], capture_output=True, text=True, timeout=120)


def test_sample_workload_has_every_speed_bench_category():
    rows = [json.loads(line) for line in SAMPLE_PATH.read_text().splitlines()]
    assert {r["category"] for r in rows} == set(SPEED_CATEGORIES)
    assert all(sum(r["category"] == c for r in rows) >= 3 for c in SPEED_CATEGORIES)


def test_default_run_uses_the_offline_sample_with_per_category_acceptance(emulator, run_loadgen):
    emu = emulator("--ttft-ms", "2", "--step-ms", "2")
    report, text = run_loadgen(url=emu.url, workload="sample", num_requests=33, concurrency=11, max_tokens=24)
    assert set(report["speculative"]["client"]["by_category"]) == set(SPEED_CATEGORIES)
    assert report["config"]["tokenizer"] == "builtin:phi3"
    # Each category got its share (round-robin), and multi-turn rows sent their second turn too.
    assert report["summary"]["requests_completed"] == report["summary"]["requests_sent"] >= 33
    assert all(row["requests"] >= 3 for row in report["categories"].values())
    assert report["summary"]["isl"]["min"] > 10
    for category in SPEED_CATEGORIES:
        assert category in text


def test_prepare_list_and_show(tmp_path, monkeypatch):
    monkeypatch.setenv("LOADGEN_CACHE_DIR", str(tmp_path / "fresh-cache"))
    assert "no prepared workloads" in loadgen("workloads", "list").stdout
    prepared = loadgen("workloads", "prepare", "sample")
    assert prepared.returncode == 0 and "55 prompts (prepared in" in prepared.stdout
    again = loadgen("workloads", "show", "sample")
    assert again.returncode == 0 and "(from the cache)" in again.stdout and "<|user|>" in again.stdout
    listed = loadgen("workloads", "list")
    assert listed.returncode == 0 and "sample" in listed.stdout


def test_prepare_speed_without_the_official_preparation_says_what_it_needs():
    assert_one_line_error(loadgen("workloads", "prepare", "speed", "--config", "qualitative"),
                          "Model-Optimizer", "specdec_bench")


@pytest.fixture
def speed_placeholder(tmp_path):
    path = tmp_path / "test.parquet"
    pq.write_table(pa.table({"question_id": ["q0"], "category": ["rag"], "sub_category": [""],
                             "turns": [[SPEED_PLACEHOLDER + "\n\nsome template"]]}), path)
    return path


@pytest.mark.parametrize("case", ["tokenizer-missing", "no-template", "malformed", "empty", "placeholder",
                                  "isl-too-long", "system-dropped", "hub-offline"])
def test_bad_workload_input_is_one_line(case, tmp_path, speed_placeholder, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the suite never reaches the hub
    good = tmp_path / "good.jsonl"
    good.write_text('{"prompt": "hello there"}\n')
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "tokenizer_config.json").write_text('{"tokenizer_class": "PreTrainedTokenizerFast"}')
    (plain / "tokenizer.json").write_text(
        (SAMPLE_PATH.parent / "phi3" / "tokenizer.json").read_text())
    args, needles = {
        "tokenizer-missing": (["--workload", str(good), "--tokenizer", str(tmp_path / "nope")], ["not found"]),
        "no-template": (["--workload", str(good), "--tokenizer", str(plain)], ["no chat template"]),
        "malformed": (["--workload", "jsonl", "--workload-path", str(tmp_path / "bad.jsonl")], ["bad.jsonl:1"]),
        "empty": (["--workload", "jsonl", "--workload-path", str(tmp_path / "empty.jsonl")], ["no prompts"]),
        "placeholder": (["--workload", "speed:qualitative", "--workload-path", str(speed_placeholder)],
                        ["placeholder", "loadgen workloads prepare speed --config qualitative"]),
        "isl-too-long": (["--workload", str(good), "--isl", "5000"], ["--isl 5000", "holds only"]),
        "system-dropped": (["--workload", str(good), "--system-prompt", "be brief"], ["drops system messages"]),
        "hub-offline": (["--workload", "speed:throughput_2k"], ["nvidia/SPEED-Bench", "--workload-path"]),
    }[case]
    (tmp_path / "bad.jsonl").write_text('{"prompt": 5}\n')
    (tmp_path / "empty.jsonl").write_text("")
    assert_one_line_error(loadgen("run", "-n", "1", "--output-dir", str(tmp_path / "out"), *args), *needles)
