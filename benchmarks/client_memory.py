"""Client memory over a long run: 100,000 requests of 256 output tokens, one token per chunk.

loadgen keeps every finished request in memory for the report (timestamps and token counts as
compact arrays: 12 bytes a chunk) and journals it to disk. The emulator streams fast (short
steps, so the run takes minutes, not hours); what is measured is the peak RSS of the loadgen
process tree (wait4: the largest of the parent and its workers) and how it grows with requests.

    python benchmarks/client_memory.py [--requests 100000] [--max-tokens 256] [--concurrency 512]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", default="10000,100000", help="comma-separated run sizes")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=512)
    parser.add_argument("--step-ms", type=float, default=0.2)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    print(f"{args.max_tokens} tokens per request, one per chunk; concurrency {args.concurrency}; "
          f"emulator step {args.step_ms} ms; {os.cpu_count()} cores")
    print("| requests | chunks | completed | wall s | client CPU s | peak RSS MiB | journal MiB |")
    print("|---|---|---|---|---|---|---|", flush=True)
    for requests in (int(n) for n in args.requests.split(",")):
        with EmulatorProcess(["--ttft-ms", "1", "--step-ms", str(args.step_ms), "--accept", "",
                              "--workers", "2"]) as emu, tempfile.TemporaryDirectory() as tmp:
            started = time.monotonic()
            proc = subprocess.Popen([sys.executable, "-m", "loadgen", "run", "--url", emu.url, "--workload", "random",
                                     "-c", str(args.concurrency), "-n", str(requests), "--max-tokens",
                                     str(args.max_tokens), "--workers", str(args.workers), "--no-progress",
                                     "--output-dir", tmp], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.monotonic() - started
            if os.waitstatus_to_exitcode(status) != 0:
                raise SystemExit(proc.stderr.read().decode()[-2000:])
            report = json.loads((Path(tmp) / "report.json").read_text())
            journal = (Path(tmp) / "requests.jsonl").stat().st_size / 2**20
        print(f"| {requests} | {requests * args.max_tokens} | {report['summary']['requests_completed']} | {wall:.0f} | "
              f"{usage.ru_utime + usage.ru_stime:.0f} | {usage.ru_maxrss / 1024:.0f} | {journal:.0f} |", flush=True)


if __name__ == "__main__":
    main()
