"""A dataset run without -n sends every prompt once; --repeats writes each repeat and their spread;
`compare` pairs runs by prompt id: an emulator run with higher acceptance is clearly faster, one
with the same acceptance profile (other draws: another seed) is within noise."""

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest

from loadgen.records import read_journal

#: a Spec-Bench question.jsonl, lopsided: categories of 12, 6 and 2 questions, the dataset's own ids
CATEGORIES = {"writing": 12, "math": 6, "translation": 2}
FLAGS = ("--workload", "specbench", "--max-tokens", "24", "-c", "1", "--emulator-step-ms", "4",
         "--emulator-ttft-ms", "2", "--no-metrics", "--no-progress", "--no-plots")


def _loadgen(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "loadgen", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200"})  # the console's table cells unwrapped
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _profile(folder: Path, name: str, accept: list[float]) -> str:
    path = folder / f"{name}.json"
    path.write_bytes(orjson.dumps({"default": {"accept": accept, "request_spread": 0.3}}))
    return str(path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("paired")
    questions = folder / "question.jsonl"
    questions.write_text("".join(orjson.dumps({"question_id": 100 * (i + 1) + j, "category": category,
                                               "turns": [f"{category} question {j}: say something about {i}"]}
                                              ).decode() + "\n"
                                 for i, (category, size) in enumerate(CATEGORIES.items()) for j in range(size)))
    common = (*FLAGS, "--workload-path", str(questions))
    slow, fast = _profile(folder, "slow", [0.6, 0.4]), _profile(folder, "fast", [0.9, 0.8, 0.7])
    _loadgen("run", *common, "--emulator-accept-profile", fast, "--repeats", "2", "--output-dir", str(folder / "fast"))
    _loadgen("run", *common, "--emulator-accept-profile", slow, "--output-dir", str(folder / "base"))
    _loadgen("run", *common, "--emulator-accept-profile", slow, "--seed", "1", "--output-dir", str(folder / "same"))
    return folder


def test_every_prompt_once_in_each_repeat(runs):
    for k in (1, 2):
        records = list(read_journal(runs / "fast" / f"repeat-{k}" / "requests.jsonl"))
        ids = Counter(r.prompt_id for r in records if not r.warmup)
        assert ids == Counter({str(100 * (i + 1) + j): 1 for i, size in enumerate(CATEGORIES.values())
                               for j in range(size)})
        sampling = orjson.loads((runs / "fast" / f"repeat-{k}" / "report.json").read_bytes())["sampling"]
        assert sampling == {"workload_prompts": 20, "requests": 20, "distinct_prompts": 20,
                            "requests_by_category": dict(sorted(CATEGORIES.items())),
                            "prompts_sent_more_than_once": 0, "most_sends_of_one_prompt": 1}
    summary = orjson.loads((runs / "fast" / "repeats.json").read_bytes())
    assert summary["repeats"] == 2 and summary["same_seed"] and summary["folders"] == ["repeat-1", "repeat-2"]
    al = summary["figures"]["acceptance_length"]
    assert len(al["values"]) == 2 and al["min"] <= al["mean"] <= al["max"] and al["cv"] < 0.2
    assert al["mean"] == pytest.approx(1 + .9 + .72 + .504, rel=0.2)  # request_spread 0.3 around 3.12


def test_compare_pairs_by_prompt_and_marks_noise(runs):
    out = runs / "cmp"
    proc = _loadgen("compare", str(runs / "fast"), str(runs / "same"), "--baseline", str(runs / "base"),
                    "--output-dir", str(out))
    result = orjson.loads((out / "compare.json").read_bytes())["runs"]
    (fast,) = result[str(runs / "fast")]["points"].values()
    (same,) = result[str(runs / "same")]["points"].values()
    paired = fast["paired"]
    assert paired["prompts"] == 20  # each prompt averaged over both repeats
    truth = (1 + .9 + .72 + .504) / (1 + .6 + .24)  # AL ratio: 1.70 at the same step time
    assert paired["tpot_speedup"]["low"] > 1.2 and not paired["tpot_speedup"]["within_noise"]
    assert paired["tpot_speedup"]["low"] < truth * 1.15 and paired["tpot_speedup"]["high"] > truth * 0.85
    # request_spread 0.3 draws each request's acceptance anew: a few prompts come out slower
    assert paired["al_difference"]["low"] > 0.5 and paired["per_prompt_speedup"]["share_faster"] >= 0.75
    for figure in ("tpot_speedup", "user_tps_speedup", "al_difference"):
        assert same["paired"][figure]["within_noise"], (figure, same["paired"][figure])
    assert "within noise" in proc.stdout and "paired by prompt" in proc.stdout
    rows = (out / "compare.csv").read_text().splitlines()
    assert "within_noise" in rows[0] and any("tpot_speedup" in row for row in rows[1:] if "same" in row)
