"""Stand-ins for the engines' launchers (vllm, python -m sglang.launch_server, trtllm-serve): each
parses its command line as strictly as the real one (an unknown flag exits 2), records what it was
given, and then behaves as FAKE_ENGINE_MODE says, serving through the emulator's matching personality.

FAKE_ENGINE_MODE: serve (default) | crash | never_ready | slow (503 for 1.5 s) | no_completions
(healthy, but every completion 503) | stubborn (ignores SIGTERM) | orphan (leaves a child that
ignores SIGTERM). FAKE_ENGINE_RECORD: a file each start appends its argv (and TRT-LLM's options
YAML) to, as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

#: the emulator's acceptance per draft position, cut to the recipe's draft length
ACCEPT = [0.8, 0.6, 0.4, 0.3, 0.2, 0.1]


def _parser(prog: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=prog, allow_abbrev=False)


def parse_vllm(argv: list[str]) -> tuple[str, str, int, int]:
    p = _parser("vllm")
    p.add_argument("command", choices=["serve"])
    p.add_argument("model")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--tensor-parallel-size", "-tp", type=int, default=1)
    p.add_argument("--gpu-memory-utilization", type=float)
    p.add_argument("--max-model-len", type=int)
    p.add_argument("--max-num-seqs", type=int)
    p.add_argument("--stream-interval", type=int)
    p.add_argument("--speculative-config", type=json.loads)
    a = p.parse_args(argv)
    spec = a.speculative_config or {}
    if spec and spec.get("method") not in ("eagle", "eagle3", "mtp", "ngram", "draft_model"):
        p.error(f"unknown speculative method {spec.get('method')!r}")
    return a.model, a.host, a.port, int(spec.get("num_speculative_tokens", 0))


def parse_sglang(argv: list[str]) -> tuple[str, str, int, int]:
    p = _parser("sglang.launch_server")
    p.add_argument("--model-path", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=30000)
    p.add_argument("--tp-size", type=int, default=1)
    p.add_argument("--enable-metrics", action="store_true")
    p.add_argument("--stream-interval", type=int, default=1)
    p.add_argument("--mem-fraction-static", type=float)
    p.add_argument("--context-length", type=int)
    p.add_argument("--max-running-requests", type=int)
    p.add_argument("--speculative-algorithm", choices=["EAGLE", "EAGLE3", "NEXTN", "STANDALONE", "NGRAM"])
    p.add_argument("--speculative-draft-model-path")
    p.add_argument("--speculative-num-steps", type=int)
    p.add_argument("--speculative-eagle-topk", type=int)
    p.add_argument("--speculative-num-draft-tokens", type=int)
    a = p.parse_args(argv)
    if not a.enable_metrics:
        p.error("loadgen recipes must turn on --enable-metrics")
    drafted = a.speculative_num_steps or ((a.speculative_num_draft_tokens or 1) - 1)
    return a.model_path, a.host, a.port, drafted if a.speculative_algorithm else 0


def parse_trtllm(argv: list[str]) -> tuple[str, str, int, int, dict]:
    import yaml

    p = _parser("trtllm-serve")
    p.add_argument("model")
    p.add_argument("--backend", choices=["pytorch", "tensorrt", "_autodeploy"])
    p.add_argument("--host", default="localhost")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--tp_size", type=int, default=1)
    p.add_argument("--max_seq_len", type=int)
    p.add_argument("--max_batch_size", type=int)
    p.add_argument("--kv_cache_free_gpu_memory_fraction", type=float)
    p.add_argument("--extra_llm_api_options", "--config", dest="config")
    a = p.parse_args(argv)
    options = yaml.safe_load(open(a.config)) if a.config else {}
    if not (options.get("enable_iter_perf_stats") and options.get("return_perf_metrics")):
        p.error("loadgen recipes must turn on enable_iter_perf_stats and return_perf_metrics")
    spec = options.get("speculative_config") or {}
    if spec and spec.get("decoding_type") not in ("Eagle", "MTP", "NGram", "DraftTarget"):  # 1.x from_dict
        p.error(f"unknown decoding_type {spec.get('decoding_type')!r}")
    drafted = spec.get("max_draft_len") or spec.get("num_nextn_predict_layers") or 0
    return a.model, a.host, a.port, drafted, options


def main(engine: str, argv: list[str]) -> None:
    options = None
    if engine == "trtllm":
        model, host, port, drafted, options = parse_trtllm(argv)
    else:
        model, host, port, drafted = {"vllm": parse_vllm, "sglang": parse_sglang}[engine](argv)
    record = os.environ.get("FAKE_ENGINE_RECORD")
    if record:
        with open(record, "a") as f:
            f.write(json.dumps({"engine": engine, "argv": argv, "options": options, "pid": os.getpid(),
                                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}) + "\n")
    mode = os.environ.get("FAKE_ENGINE_MODE", "serve")
    print(f"fake {engine}: loading {model} (mode {mode})", flush=True)
    if mode == "crash":
        time.sleep(0.3)
        print("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", flush=True)
        sys.exit(1)
    if mode == "never_ready":
        time.sleep(3600)
    emulator = [sys.executable, "-m", "loadgen", "emulate", "--engine", engine, "--host", host, "--port", str(port),
                "--model", model, "--ttft-ms", "20", "--step-ms", "5",
                "--accept", ",".join(map(str, ACCEPT[:drafted]))]
    if mode == "slow":
        emulator += ["--slow-start-s", "1.5"]
    if mode == "no_completions":  # healthy, models listed, every completion answered 503
        emulator += ["--fail-status", "503=1.0"]
    if mode == "orphan":
        subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                          "time.sleep(300)"])
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        subprocess.Popen(emulator).wait()
        time.sleep(3600)
    os.execv(sys.executable, emulator)
