"""Does the client limit the measurement? loadgen (1..N workers) and a minimal aiohttp client,
each against the same emulator, beside the truth.

The emulator runs without speculation (one token per step) and with --send-timestamps, so
    truth TTFT = --ttft-ms, truth inter-chunk = --step-ms,
    truth output TPS = streams * max_tokens / (ttft + (max_tokens - 1) * step)  (closed loop),
and every chunk carries its send time: receive lag = the time the client recorded for a chunk
minus the emulator's send stamp (one CLOCK_MONOTONIC on one machine). loadgen records the
kernel's arrival stamp, so its receive lag is the loopback delay; its read lag is how late it then
processed the read. The reference client records time.monotonic_ns() when aiohttp hands it the
chunk, which is both. The emulator's own lateness against its schedule (from its /metrics) shows
it was not the limit. Each client runs as its own process; its CPU time and peak RSS (largest
process: the parent or one worker) come from wait4.

    python benchmarks/client_fidelity.py [--streams 512,1024] [--workers 1,2] [--waves 3]

The reference needs aiohttp (pip install '.[bench]').
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from loadgen.emulator.launch import EmulatorProcess


def emulator_lag(url: str) -> tuple[float, float]:
    text = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
    values = dict(line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("emulator_send_lag"))
    count = float(values["emulator_send_lag_seconds_count"])
    mean = float(values["emulator_send_lag_seconds_sum"]) / count if count else 0.0
    return mean, float(values["emulator_send_lag_max_seconds"])


def group_cpu_seconds(pgid: int) -> float:
    """CPU seconds of every live process in a process group (the emulator and its workers)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after "(comm)": state ppid pgrp ... utime(12) stime(13)
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def run_process(cmd: list[str]) -> tuple[str, float, float]:
    """Run cmd; its output, CPU seconds (with the workers it waited for) and peak RSS in MiB."""
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        output = log.read().decode()
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed ({proc.returncode}):\n{output[-2000:]}")
    return output, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def measure_loadgen(url: str, streams: int, workers: int, args, metrics: bool = True) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        _, cpu, rss = run_process([sys.executable, "-m", "loadgen", "run", "--url", url, "--workload", "random",
                                   "-c", str(streams), "-n", str(streams * args.waves), "--max-tokens",
                                   str(args.max_tokens), "--workers", str(workers), "--no-progress",
                                   "--output-dir", tmp, *(("--metrics-addr", "127.0.0.1:0") if metrics else
                                                          ("--no-metrics",))])
        report = json.loads((Path(tmp) / "report.json").read_text())
    lat, load = report["latency"], report["load"]
    return {"client": f"loadgen ×{workers}" + ("" if metrics else " no metrics"),
            "tps": report["summary"]["output_tps"],
            "icl_p50": lat["icl_s"]["p50"], "icl_p99": lat["icl_s"]["p99"], "ttft_p50": lat["ttft_s"]["p50"],
            "recv_p50": lat["receive_lag_s"]["p50"], "recv_p99": lat["receive_lag_s"]["p99"],
            "read_p99": report["client"]["read_lag"]["p99_s"], "held": load["achieved_ratio"],
            "failed": report["summary"]["requests_failed"], "cpu": cpu, "rss": rss}


def measure_reference(url: str, streams: int, args) -> dict:
    output, cpu, rss = run_process([sys.executable, __file__, "--reference", url, "--streams", str(streams),
                                    "--waves", str(args.waves), "--max-tokens", str(args.max_tokens)])
    return json.loads(output.strip().splitlines()[-1]) | {"client": "aiohttp ref", "cpu": cpu, "rss": rss}


async def reference_client(url: str, streams: int, waves: int, max_tokens: int) -> dict:
    """The straightforward client: one aiohttp session, one task per stream, each chunk stamped with
    time.monotonic_ns() and parsed with orjson as it is read."""
    import aiohttp
    import orjson

    body = orjson.dumps({"model": "emulator", "prompt": list(range(1, 129)), "max_tokens": max_tokens,
                         "stream": True, "ignore_eos": True, "temperature": 0,
                         "stream_options": {"include_usage": True, "continuous_usage_stats": True}})
    ttft, icl, recv, tokens, ends = [], [], [], [0], []
    first_send = time.monotonic_ns()

    async def stream(session: aiohttp.ClientSession) -> None:
        for _ in range(waves):
            scheduled = time.monotonic_ns()
            async with session.post(url + "/v1/completions", data=body,
                                    headers={"Content-Type": "application/json"}) as resp:
                last = None
                async for line in resp.content:
                    now = time.monotonic_ns()
                    if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                        continue
                    chunk = orjson.loads(line[6:])
                    if not chunk.get("choices"):
                        continue
                    recv.append(now - chunk["emulator_sent_ns"])
                    if last is None:
                        ttft.append(now - scheduled)
                    else:
                        icl.append(now - last)
                    last = now
                    tokens[0] += 1
                ends.append(last)

    connector = aiohttp.TCPConnector(limit=streams)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as session:
        first_send = time.monotonic_ns()
        await asyncio.gather(*(stream(session) for _ in range(streams)))
    q = lambda xs, p: float(np.percentile(np.array(xs) / 1e9, p))  # noqa: E731
    return {"tps": tokens[0] / ((max(ends) - first_send) / 1e9), "icl_p50": q(icl, 50), "icl_p99": q(icl, 99),
            "ttft_p50": q(ttft, 50), "recv_p50": q(recv, 50), "recv_p99": q(recv, 99), "read_p99": None,
            "held": None, "failed": 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", default="64,512,1024")
    parser.add_argument("--workers", default="1,2", help="loadgen worker counts to measure")
    parser.add_argument("--waves", type=int, default=3, help="requests per stream")
    parser.add_argument("--ttft-ms", type=float, default=50.0)
    parser.add_argument("--step-ms", type=float, default=20.0)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--emulator-workers", type=int,
                        help="emulator processes [default: 1 up to 512 streams, else 2]: on a small machine a second "
                             "emulator process takes the client's core, and one process keeps 512 streams on time")
    parser.add_argument("--no-reference", action="store_true", help="skip the aiohttp reference")
    parser.add_argument("--metrics-ab", action="store_true",
                        help="also run loadgen ×1 with --no-metrics (the live metrics' cost end to end)")
    parser.add_argument("--reference", metavar="URL", help=argparse.SUPPRESS)  # internal: run the reference client
    args = parser.parse_args()
    if args.reference:
        import uvloop
        print(json.dumps(uvloop.run(reference_client(args.reference, int(args.streams), args.waves,
                                                     args.max_tokens))))
        return
    ttft, step, tokens = args.ttft_ms / 1e3, args.step_ms / 1e3, args.max_tokens
    header = ("streams", "client", "out TPS", "truth", "ICL p50 ms", "ICL p99 ms", "TTFT p50 ms", "recv lag p50 ms",
              "recv lag p99 ms", "read lag p99 ms", "load held", "failed", "client CPU s", "peak RSS MiB",
              "emulator procs", "emu CPU s", "emu lag mean/max ms")
    print(f"truth: TTFT {args.ttft_ms:g} ms, inter-chunk {args.step_ms:g} ms, {tokens} tokens; "
          f"{os.cpu_count()} cores; python {sys.version.split()[0]}")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header), flush=True)
    for streams in (int(s) for s in args.streams.split(",")):
        truth = streams * tokens / (ttft + (tokens - 1) * step)
        emulator_workers = args.emulator_workers or (1 if streams <= 512 else 2)
        clients = [("loadgen", int(w)) for w in args.workers.split(",")]
        if args.metrics_ab:
            clients.append(("loadgen-no-metrics", 1))
        if not args.no_reference:
            clients.append(("reference", 1))
        for kind, workers in clients:
            with EmulatorProcess(["--ttft-ms", str(args.ttft_ms), "--step-ms", str(args.step_ms), "--accept", "",
                                  "--send-timestamps", "--workers", str(emulator_workers)]) as emu:
                row = (measure_reference(emu.url, streams, args) if kind == "reference"
                       else measure_loadgen(emu.url, streams, workers, args, metrics=kind == "loadgen"))
                lag_mean, lag_max = emulator_lag(emu.url)
                emu_cpu = group_cpu_seconds(emu.pid)
            ms = lambda v: "-" if v is None else f"{v * 1e3:.2f}"  # noqa: E731
            held = "-" if row["held"] is None else f"{row['held']:.1%}"
            print(f"| {streams} | {row['client']} | {row['tps']:.0f} ({row['tps'] / truth:.1%}) | {truth:.0f} | "
                  f"{ms(row['icl_p50'])} | {ms(row['icl_p99'])} | {ms(row['ttft_p50'])} | {ms(row['recv_p50'])} | "
                  f"{ms(row['recv_p99'])} | {ms(row['read_p99'])} | {held} | {row['failed']} | {row['cpu']:.1f} | "
                  f"{row['rss']:.0f} | {emulator_workers} | {emu_cpu:.1f} | {lag_mean * 1e3:.2f} / "
                  f"{lag_max * 1e3:.2f} |", flush=True)


if __name__ == "__main__":
    main()
