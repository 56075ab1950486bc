"""`loadgen tune --recipe` against a fake vLLM (it serves the emulator, its acceptance cut to the
draft length it was given): one server per draft length with K in vLLM's own flag (K = 0: no
speculative config at all), each stopped before the next starts; a rerun serves nothing again;
Ctrl-C stops the server and exits 130. (tests/llamacpp/test_tune_llamacpp.py: the same for real.)"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson

from loadgen.servers.process import group_alive

from .argv import draft_length, without

RUN = ["--num-requests", "8", "--max-tokens", "16", "--workload", "random", "--input-len", "16", "--no-plots",
       "--no-metrics", "--no-progress"]


def _tune(recipe: Path, out: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loadgen", "tune", "--recipe", str(recipe), "--port", "0",
                           "--output-dir", str(out), *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_tune_serves_the_recipe_at_each_draft_length_then_resumes(fake_engines, tmp_path):
    recipe = fake_engines.recipe("eagle3", max_num_seqs="8")
    out = tmp_path / "study"
    proc = _tune(recipe, out, "-k", "0,1,2", "-c", "1,2", *RUN, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    starts = fake_engines.starts()
    assert [draft_length(s["argv"]) for s in starts] == [0, 1, 2]
    assert all(not group_alive(s["pid"]) for s in starts)
    spec = json.loads(starts[2]["argv"][starts[2]["argv"].index("--speculative-config") + 1])
    assert spec == {"method": "eagle3", "num_speculative_tokens": 2, "model": "test/draft"}
    # all else identical: the same command but for the speculative config and the (free) port
    same = [without(s["argv"], {"--speculative-config", "--port"}) for s in starts]
    assert same[0] == same[1] == same[2] and "--max-num-seqs" in same[0]

    summary = orjson.loads((out / "tune.json").read_bytes())
    assert [d["concurrency"] for d in summary["decisions"]] == [1, 2] and summary["model"]["points"]
    for k in (0, 1, 2):
        info = orjson.loads((out / f"k{k}" / "server.json").read_bytes())
        assert summary["servers"][str(k)] == info and info["startup_s"] > 0
        assert (out / f"k{k}" / "server.log").read_text().startswith("# loadgen serve ")
        for c in (1, 2):
            report = orjson.loads((out / f"k{k}" / f"c{c}" / "report.json").read_bytes())
            assert report["summary"]["requests_failed"] == 0 and report["config"]["engine"] == "vllm"
    rows = {(r["concurrency"], r["draft_length"]): r for r in summary["rows"]}
    assert rows[(1, 2)]["acceptance_length"] > rows[(1, 1)]["acceptance_length"] > 1  # the fake's K took effect

    again = _tune(recipe, out, "-k", "0,1,2", "-c", "1,2", *RUN, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert len(fake_engines.starts()) == 3 and again.stdout.count("not served again") == 3
    more = _tune(recipe, out, "-k", "0,1,2,3", "-c", "1,2", *RUN, cwd=tmp_path)  # a new K: only it is served
    assert more.returncode == 0, more.stderr
    assert [draft_length(s["argv"]) for s in fake_engines.starts()] == [0, 1, 2, 3]


def test_interrupting_tune_stops_its_server_and_exits_130(fake_engines, tmp_path):
    recipe = fake_engines.recipe("eagle3")
    out = tmp_path / "study"
    proc = subprocess.Popen([sys.executable, "-m", "loadgen", "tune", "--recipe", str(recipe), "--port", "0",
                             "--output-dir", str(out), "-k", "0,1", "-c", "1", *RUN, "--num-requests", "100000"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    journal = out / "k0" / "c1" / "requests.jsonl"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (journal.exists() and journal.stat().st_size > 0):
            time.sleep(0.1)
        assert journal.exists(), "the first run never started"
    finally:
        proc.send_signal(signal.SIGINT)  # also when the test fails: tune stops its server
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    [start] = fake_engines.starts()
    assert not group_alive(start["pid"])
    assert orjson.loads((journal.parent / "report.json").read_bytes())["partial"]
    assert not (out / "tune.json").exists()
