"""Soak: 20,000 requests against an emulator that injects ~5 % of every fault kind, and a restart.

Prints what was sent, completed and failed (by kind), what was lost (planned but never
journaled, or journaled but missing from the report: must be 0), and the client's peak RSS.

    python benchmarks/soak.py [--requests 20000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from loadgen.emulator.launch import EmulatorProcess
from loadgen.records import read_journal

FAULTS = ["--fail-status", "429=0.05", "--fail-status", "500=0.05", "--fail-status", "503=0.05",
          "--fail-stream-error", "0.05", "--fail-reset", "0.05", "--fail-stall", "0.05", "--stall-s", "2",
          "--fail-malformed", "0.05"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--restart-after-s", type=float, default=10.0)
    args = parser.parse_args()
    with EmulatorProcess(["--ttft-ms", "5", "--step-ms", "2", "--seed", "7", *FAULTS,
                          "--restart-after-s", str(args.restart_after_s)]) as emu, \
            tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "loadgen", "run", "--url", emu.url, "--workload", "random",
                                 "-n", str(args.requests), "-c", str(args.concurrency), "--max-tokens", "32",
                                 "--idle-timeout", "1", "--no-metrics", "--no-progress", "--output-dir", tmp],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(proc.stderr.read().decode()[-2000:])
        report = json.loads((Path(tmp) / "report.json").read_text())
        journaled = list(read_journal(Path(tmp) / "requests.jsonl"))
    s = report["summary"]
    lost = (args.requests - len(journaled)) + (len(journaled) - s["requests_sent"])
    print(f"{args.requests} requests planned, concurrency {args.concurrency}, faults: 5 % each of HTTP 429, 500, "
          f"503, mid-stream error event, connection reset, 2 s stall (idle timeout 1 s), malformed event; "
          f"a restart after {args.restart_after_s:g} s")
    print("| sent | completed | failed | cancelled | lost | wall s | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {s['requests_sent']} | {s['requests_completed']} | {s['requests_failed']} | {s['requests_cancelled']} | "
          f"{lost} | {wall:.0f} | {usage.ru_maxrss / 1024:.0f} |")
    print("\n| failure | count |\n|---|---|")
    for detail, count in sorted(report["error_details"].items()):
        print(f"| {detail} | {count} |")


if __name__ == "__main__":
    main()
