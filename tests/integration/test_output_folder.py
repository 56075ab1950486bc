"""One run per folder: a second run into a run's folder would append to its journal, and
`loadgen report --rebuild` would merge the two runs into one report."""

import dataclasses
import io
import subprocess
import sys

import orjson
from rich.console import Console

from loadgen.config import RunConfig
from loadgen.layout import RunFolder, SweepFolder
from loadgen.records import read_journal
from loadgen.studies.sweep import run_sweep


def _run(url: str, out, n: int, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loadgen", "run", "--url", url, "--output-dir", str(out), "-n", str(n),
                           "--workload", "random", "--max-tokens", "8", "--no-metrics", "--no-progress", *extra],
                          capture_output=True, text=True, timeout=120)


def _snapshot(folder) -> dict:
    return {f.name: (f.read_bytes(), f.stat().st_mtime_ns) for f in sorted(folder.iterdir())}


def test_a_second_run_into_a_run_folder_is_refused_and_changes_nothing(emulator, tmp_path):
    emu = emulator("--ttft-ms", "1", "--step-ms", "1")
    out = tmp_path / "run"
    assert _run(emu.url, out, 12).returncode == 0
    before = _snapshot(out)
    second = _run(emu.url, out, 20)
    assert second.returncode == 2 and "Traceback" not in second.stderr
    (line,) = [line for line in second.stderr.splitlines() if line.strip()]
    assert line == (f"error: --output-dir {out} already holds a run (run.json, requests.jsonl, report.json, ...): "
                    "give another folder, or --replace to delete that run's files first")
    assert _snapshot(out) == before


def test_replace_leaves_only_the_second_run_and_other_files(emulator, tmp_path):
    emu = emulator("--ttft-ms", "1", "--step-ms", "1")
    out = tmp_path / "run"
    assert _run(emu.url, out, 30).returncode == 0
    (out / "notes.txt").write_text("mine")
    again = _run(emu.url, out, 12, "--replace", "--no-plots")
    assert again.returncode == 0, again.stderr
    folder = RunFolder(out)
    assert len(list(read_journal(folder.journal))) == 12
    assert orjson.loads(folder.report.read_bytes())["summary"]["requests_sent"] == 12
    # the first run's pictures went with it (this one drew none); the folder's other files stay
    assert not folder.html.exists() and not folder.acceptance_plot.exists()
    assert (out / "notes.txt").read_text() == "mine"


def test_an_empty_or_missing_folder_is_fine(emulator, tmp_path):
    emu = emulator("--ttft-ms", "1", "--step-ms", "1")
    (tmp_path / "empty").mkdir()
    assert _run(emu.url, tmp_path / "empty", 4, "--no-plots").returncode == 0
    assert _run(emu.url, tmp_path / "not" / "yet", 4, "--no-plots").returncode == 0


def test_a_resumed_sweep_reruns_a_killed_point_in_a_clean_folder(emulator, tmp_path):
    emu = emulator("--ttft-ms", "1", "--step-ms", "1")
    out = tmp_path / "sweep"
    base = RunConfig(url=emu.url, output_dir=out, workload="random", num_requests=16, max_tokens=8, progress=False,
                     plots=False)
    # a point killed mid-run: its settings and half a journal, no report
    donor = tmp_path / "donor"
    run_sweep(dataclasses.replace(base, num_requests=7), "concurrency", [2], donor, Console(file=io.StringIO()))
    killed = SweepFolder(out).point("concurrency", 2)
    killed.path.mkdir(parents=True)
    for name in ("run_info", "journal"):
        getattr(killed, name).write_bytes(getattr(SweepFolder(donor).point("concurrency", 2), name).read_bytes())
    summary = run_sweep(base, "concurrency", [2], out, Console(file=io.StringIO()))
    assert not summary["interrupted"]
    records = list(read_journal(killed.journal))
    assert len(records) == 16 and len({r.request_id for r in records}) == 16
    assert orjson.loads(killed.report.read_bytes())["summary"]["requests_sent"] == 16
