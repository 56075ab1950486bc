"""Load workers on a Ray cluster of two nodes on loopback (the head at 127.0.0.2 with 2 CPUs, a node
at 127.0.0.3 with 1; tests/ray/cluster.py), driving the emulator: the clock offsets and their
bounds, and how long a lost node takes to show in the journal when its processes are killed and
when they are frozen (a hung node, whose connections stay open: only Ray's health checks, here
0.5 s x 3, can tell).

    python benchmarks/ray_cluster.py [--runs 3]

Every node shares this machine's clock, so each true offset is 0: an offset says how good the
round-trip estimate is, and must lie within its bound.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loadgen.emulator.launch import EmulatorProcess  # noqa: E402
from loadgen.records import read_journal  # noqa: E402
from tests.ray.cluster import ENV, RayNode, start_head, stop_all, strike_mid_run  # noqa: E402

ARGS = ["--workload", "random", "--max-tokens", "32", "--input-len", "64", "--no-metrics", "--no-plots",
        "--no-progress", "--workers", "3", "-c", "12"]


def _run(head: str, url: str, out: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "loadgen", "run", *ARGS, "--url", url, "--ray", head, "--output-dir", str(out),
            *args]


def clocks(head: str, url: str, work: Path, runs: int) -> None:
    print("run  worker  node        offset us  bound us  output tok/s")
    for i in range(runs):
        out = work / f"clocks{i}"
        subprocess.run(_run(head, url, out, "-n", "240"), check=True, capture_output=True)
        report = orjson.loads((out / "report.json").read_bytes())
        for c in report["workers"]["clocks"]:
            ip = c["where"].split("(")[1].split(",")[0]
            print(f"{i:<3}  {c['worker']:>6}  {ip:<10}  {c['offset_ns'] / 1e3:>9.1f}  {c['error_bound_ns'] / 1e3:>8.1f}"
                  f"  {report['summary']['output_tps']:>12.0f}")


def loss(head: str, url: str, work: Path, node: RayNode, sig: int) -> None:
    """Strike the node one second into a run; the time until its worker's requests are journaled lost."""
    out = work / f"lost-{signal.Signals(sig).name}"
    journal = out / "requests.jsonl"
    proc, struck_ns = strike_mid_run(_run(head, url, out, "-n", "900", "--on-worker-loss", "continue"), journal,
                                     node, sig, delay_s=1, timeout=300)
    if proc.returncode:
        sys.exit(proc.stderr[-2000:])
    lost = [r for r in read_journal(journal) if r.error and r.error.kind == "worker_lost"]
    report = orjson.loads((out / "report.json").read_bytes())
    summary = report["summary"]
    print(f"{signal.Signals(sig).name:<8} lost after {(min(r.end_ns for r in lost) - struck_ns) / 1e9:5.2f} s; "
          f"{len(lost)} requests failed, {summary['requests_completed']} of {summary['requests_sent']} completed; "
          f"{report['workers']['lost'][0]['reason'].rpartition(': ')[0].rpartition('lost: ')[2]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    os.environ.update(ENV)
    with tempfile.TemporaryDirectory() as tmp, EmulatorProcess(["--ttft-ms", "20", "--step-ms", "10"]) as emu:
        work = Path(tmp)
        head = start_head(work / "ray")
        try:
            node = RayNode(head, "127.0.0.3")
            clocks(head, emu.url, work, args.runs)
            loss(head, emu.url, work, node, signal.SIGKILL)
            node.remove()
            node = RayNode(head, "127.0.0.4")
            loss(head, emu.url, work, node, signal.SIGSTOP)
            node.remove()
        finally:
            stop_all()


if __name__ == "__main__":
    main()
