"""The emulator's vllm personality on /v1/chat/completions against what vLLM 0.32.0 itself sent
(fixtures/vllm-real/chat-*, recorded by tests/vllm/record_captures.py: tiny-llama with its own chat
template, no speculative decoding, max_tokens 16, ignore_eos; and with a reasoning parser, every token
reasoning): every event with the same keys in the same order at every depth, the same value types,
the same number of events and the same token counts.
The real model's text and prompt length are not compared (the emulator has no model nor tokenizer)."""

import json
import re
import urllib.request
from pathlib import Path

import pytest

from tests.vllm.record_captures import CHAT_MESSAGES, CHAT_REQUESTS

REAL = Path(__file__).parent / "fixtures" / "vllm-real"
#: the captured server did not speculate: one token per chunk
NO_SPECULATION = ("--model", "tiny-llama", "--accept", "", "--ttft-ms", "1", "--step-ms", "1")


def skeleton(value: object) -> object:
    """Keys in order at every depth and the type of every value; a list of token ids is one type."""
    if isinstance(value, dict):
        return [(key, skeleton(v)) for key, v in value.items()]
    if isinstance(value, list):
        if value and all(isinstance(v, int) for v in value):
            return "token ids"
        return [skeleton(v) for v in value]
    return None if value is None else type(value).__name__


def sse_events(raw: str) -> list:
    return [json.loads(block[len("data: "):]) if block != "data: [DONE]" else "[DONE]"
            for block in raw.split("\n\n") if block]


def post_chat(url: str, extra: dict) -> str:
    body = {"model": "tiny-llama", "messages": CHAT_MESSAGES, "max_tokens": 16, "temperature": 0.0,
            "ignore_eos": True, **extra}
    request = urllib.request.Request(url + "/v1/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=20) as resp:
        return resp.read().decode()


STREAMS = [c for c in CHAT_REQUESTS if c[0].endswith(".sse")]
#: the reasoning captures' server streamed every token as reasoning (see fixtures/vllm-real/README.md)
REASONING = ("--reasoning-tokens", "16")


@pytest.mark.parametrize(("prefix", "flags"), [("chat", ()), ("chat-reasoning", REASONING)])
@pytest.mark.parametrize(("capture", "extra"), STREAMS)
def test_chat_stream_has_the_real_shape_and_counts(emulator, capture, extra, prefix, flags):
    emu = emulator("--engine", "vllm", *NO_SPECULATION, *flags)
    capture = capture.replace("chat", prefix, 1)
    real, emulated = sse_events((REAL / capture).read_text()), sse_events(post_chat(emu.url, extra))
    assert [skeleton(e) for e in emulated] == [skeleton(e) for e in real]
    assert len(real) == 1 + 16 + (1 if extra.get("stream_options") else 0) + 1  # role, tokens, usage, [DONE]
    real_usage = [e["usage"]["completion_tokens"] for e in real if isinstance(e, dict) and "usage" in e]
    emulated_usage = [e["usage"]["completion_tokens"] for e in emulated if isinstance(e, dict) and "usage" in e]
    assert emulated_usage == real_usage
    assert re.fullmatch(r"chatcmpl-[0-9a-f]{16}", real[0]["id"]) and re.fullmatch(r"chatcmpl-[0-9a-f]{16}",
                                                                                   emulated[0]["id"])


@pytest.mark.parametrize(("prefix", "flags"), [("chat", ()), ("chat-reasoning", REASONING)])
def test_chat_body_has_the_real_shape_and_counts(emulator, prefix, flags):
    emu = emulator("--engine", "vllm", *NO_SPECULATION, *flags)
    real = json.loads((REAL / f"{prefix}-body.json").read_text())
    emulated = json.loads(post_chat(emu.url, {}))
    assert skeleton(emulated) == skeleton(real)
    assert emulated["usage"]["completion_tokens"] == real["usage"]["completion_tokens"] == 16
