"""loadgen against the emulator at 64, 256 and 512 streams: how close are the figures to the truth?

The emulator runs without speculation (one token per step) and with --send-timestamps, so
    truth TTFT = --ttft-ms, truth inter-chunk = --step-ms,
    truth output TPS = streams * max_tokens / (ttft + (max_tokens - 1) * step)  (closed loop),
and the client's read lag (kernel arrival stamp -> the read that processed it) shows how far
the client fell behind. The emulator's own lateness against its schedule comes from its
/metrics, to show it was not the limit.

    python benchmarks/emulator_fidelity.py [--streams 64,256,512] [--waves 3]
"""

from __future__ import annotations

import argparse
import io
import resource
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from rich.console import Console

from loadgen.config import RunConfig
from loadgen.emulator.launch import EmulatorProcess
from loadgen.runner import run


def emulator_lag(url: str) -> tuple[float, float]:
    text = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
    values = dict(line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("emulator_send_lag"))
    count = float(values["emulator_send_lag_seconds_count"])
    mean = float(values["emulator_send_lag_seconds_sum"]) / count if count else 0.0
    return mean, float(values["emulator_send_lag_max_seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", default="64,256,512")
    parser.add_argument("--waves", type=int, default=3, help="requests per stream")
    parser.add_argument("--ttft-ms", type=float, default=50.0)
    parser.add_argument("--step-ms", type=float, default=20.0)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--emulator-workers", type=int, default=1)
    args = parser.parse_args()
    ttft, step, tokens = args.ttft_ms / 1e3, args.step_ms / 1e3, args.max_tokens
    rows = []
    for streams in (int(s) for s in args.streams.split(",")):
        with EmulatorProcess(["--ttft-ms", str(args.ttft_ms), "--step-ms", str(args.step_ms), "--accept", "",
                              "--send-timestamps", "--workers", str(args.emulator_workers)]) as emu, \
                tempfile.TemporaryDirectory() as tmp:
            cpu0 = time.process_time()
            report = run(RunConfig(url=emu.url, output_dir=Path(tmp), workload="random", concurrency=streams,
                                   num_requests=streams * args.waves, max_tokens=tokens, progress=False),
                         Console(file=io.StringIO()))
            cpu = time.process_time() - cpu0
            lag_mean, lag_max = emulator_lag(emu.url)
        lat, summary = report["latency"], report["summary"]
        truth_tps = streams * tokens / (ttft + (tokens - 1) * step)
        rows.append((streams, summary["output_tps"], truth_tps, (lat["ttft_s"]["p50"] - ttft) * 1e3,
                     (lat["icl_s"]["p50"] - step) * 1e3, (lat["icl_s"]["p99"] - step) * 1e3,
                     report["client"]["read_lag"]["p50_s"] * 1e3, report["client"]["read_lag"]["p99_s"] * 1e3,
                     summary["requests_failed"], cpu, lag_mean * 1e3, lag_max * 1e3))
    header = ("streams", "out TPS", "truth", "TTFT p50 err ms", "ICL p50 err ms", "ICL p99 err ms",
              "read lag p50 ms", "read lag p99 ms", "failed", "client CPU s", "emu lag mean ms", "emu lag max ms")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print(f"| {r[0]} | {r[1]:.0f} ({r[1] / r[2]:.1%}) | {r[2]:.0f} | {r[3]:+.2f} | {r[4]:+.2f} | {r[5]:+.2f} | "
              f"{r[6]:.2f} | {r[7]:.2f} | {r[8]} | {r[9]:.1f} | {r[10]:.2f} | {r[11]:.2f} |")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"client peak RSS {rss:.0f} MiB; python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
