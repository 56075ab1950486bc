"""The emulator's llamacpp personality on /v1/chat/completions against the real llama-server (its own
chat template, no speculative decoding): the same events with the same keys in the same order at
every depth and the same value types — the role event, the token events, the finish event, the
usage event with timings, [DONE] — and the non-streaming answer's shape. The real model's text is
not compared (the emulator has no model); the real server's token count is its usage."""

from __future__ import annotations

import json
import urllib.request

from tests.unit.emulator.test_vllm_chat_matches_real import skeleton

MESSAGES = [{"role": "system", "content": "You are terse."},
            {"role": "user", "content": "The quick brown fox jumps over the lazy dog."}]
MAX_TOKENS = 8


def post_chat(url: str, streaming: bool) -> bytes:
    body = {"model": "tiny", "messages": MESSAGES, "max_tokens": MAX_TOKENS, "ignore_eos": True,
            "temperature": 0.0, "stream": streaming}
    if streaming:
        body["stream_options"] = {"include_usage": True}
    request = urllib.request.Request(url + "/v1/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as resp:
        return resp.read()


def sse_events(raw: bytes) -> list:
    return [json.loads(block[len("data: "):]) if block != "data: [DONE]" else "[DONE]"
            for block in raw.decode().split("\n\n") if block]


def test_chat_stream_and_body_have_the_real_servers_shape(llama_server, emulator):
    real_server = llama_server(draft_n=0)
    emu = emulator("--engine", "llamacpp", "--model", "tiny", "--accept", "", "--ttft-ms", "1", "--step-ms", "1")
    real, emulated = sse_events(post_chat(real_server.url, True)), sse_events(post_chat(emu.url, True))
    real_usage = real[-2]["usage"]
    assert real_usage["completion_tokens"] == MAX_TOKENS == emulated[-2]["usage"]["completion_tokens"]
    # role event + one event per token + finish event + usage event + [DONE]
    assert len(emulated) == 1 + MAX_TOKENS + 3
    # a token whose text is not complete yet (a split UTF-8 sequence) sends no event: at most one per token
    assert len(real) <= len(emulated)
    assert [skeleton(e) for e in real[:2]] == [skeleton(e) for e in emulated[:2]]
    assert {str(skeleton(e)) for e in real[1:-3]} == {str(skeleton(e)) for e in emulated[1:-3]}
    assert [skeleton(e) for e in real[-3:]] == [skeleton(e) for e in emulated[-3:]]
    real_body, emulated_body = json.loads(post_chat(real_server.url, False)), json.loads(post_chat(emu.url, False))
    assert skeleton(emulated_body) == skeleton(real_body)
    assert real_body["usage"]["completion_tokens"] == emulated_body["usage"]["completion_tokens"] == MAX_TOKENS
