"""`loadgen emulate` on /v1/chat/completions over real loopback sockets, per engine: the role chunk,
content deltas and their token counts, usage (continuous where the engine offers it), reasoning
deltas in each engine's own field (--reasoning-tokens), the non-streaming answer, and the
--endpoints and --text-prompts-only gateways.

Every emulated token's text is one word with a leading space, so the words of the streamed text
count its tokens; with --accept '' each step makes one token.
"""

from __future__ import annotations

import json

import pytest

from tests.integration.test_emulator_personalities import CONTINUOUS, stream

ENGINES = ["vllm", "sglang", "trtllm", "llamacpp"]
#: the delta (and message) field reasoning streams in
REASONING_FIELD = {"vllm": "reasoning", "sglang": "reasoning_content", "trtllm": "reasoning_content",
                   "llamacpp": "reasoning_content"}
MESSAGES = [{"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Count the words of this prompt please"}]
PROMPT_WORDS = 10
FAST = ("--ttft-ms", "1", "--step-ms", "1")
CHAT = "/v1/chat/completions"


def chat_body(engine: str, max_tokens: int, streaming: bool = True, **extra) -> dict:
    body = {"model": "emulator", "messages": MESSAGES, "max_tokens": max_tokens, "stream": streaming, **extra}
    if streaming and engine != "llamacpp":
        body["stream_options"] = {**CONTINUOUS[engine].get("stream_options", {}), "include_usage": True}
    elif streaming:
        body["stream_options"] = {"include_usage": True}
    return body


def events_of(chunks: list[list]) -> list:
    return [e for events in chunks for e in events]


def deltas(events: list) -> list[dict]:
    return [e["choices"][0]["delta"] for e in events if isinstance(e, dict) and e.get("choices")]


def words(parts: list[dict], field: str) -> int:
    return len("".join(d.get(field) or "" for d in parts).split())


def final_usage(events: list) -> dict:
    usage_only = [e for e in events if isinstance(e, dict) and e.get("choices") == [] and "usage" in e]
    assert len(usage_only) == 1
    return usage_only[0]["usage"]


@pytest.mark.parametrize("engine", ENGINES)
def test_chat_stream_role_first_then_content_with_exact_counts(emulator, engine):
    emu = emulator("--engine", engine, *FAST, "--accept", "")
    status, chunks, _ = stream(emu.url, chat_body(engine, 12), path=CHAT)
    assert status == 200
    events = events_of(chunks)
    assert events[-1] == "[DONE]"
    chunk_events = [e for e in events if isinstance(e, dict)]
    assert {e["object"] for e in chunk_events} == {"chat.completion.chunk"}
    assert chunk_events[0]["id"].startswith("chatcmpl-")
    parts = deltas(chunk_events)
    assert parts[0]["role"] == "assistant" and not parts[0].get("content")
    assert all("role" not in d for d in parts[1:])
    assert words(parts, "content") == 12
    assert all(not d.get(REASONING_FIELD[engine]) for d in parts)  # no reasoning unless asked
    finishes = [e["choices"][0].get("finish_reason") for e in chunk_events if e.get("choices")]
    assert finishes[-1] == "length" and set(finishes[:-1]) == {None}
    usage = final_usage(chunk_events)
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (
        PROMPT_WORDS, 12, PROMPT_WORDS + 12)
    if engine != "llamacpp":  # continuous usage: cumulative counts, one more token per step
        counts = [e["usage"]["completion_tokens"] for e in chunk_events if e.get("choices") and e.get("usage")]
        assert counts[-1] == 12 and all(b - a in (0, 1) for a, b in zip(counts, counts[1:]))
    else:  # one event per token: the role event, 12 token events, the finish event
        assert len(parts) == 1 + 12 + 1 and "timings" in chunk_events[-1]


@pytest.mark.parametrize("engine", ENGINES)
def test_reasoning_tokens_stream_first_in_the_engines_field_and_count_in_usage(emulator, engine):
    # accept 1,1,1: four tokens per decode step, so the step after the prefill holds reasoning and answer
    emu = emulator("--engine", engine, *FAST, "--accept", "1,1,1", "--reasoning-tokens", "3")
    status, chunks, _ = stream(emu.url, chat_body(engine, 12), path=CHAT)
    assert status == 200
    events = [e for e in events_of(chunks) if isinstance(e, dict)]
    parts = deltas(events)
    field = REASONING_FIELD[engine]
    assert words(parts, field) == 3 and words(parts, "content") == 9
    first_answer = next(i for i, d in enumerate(parts) if d.get("content"))
    assert all(not d.get(field) for d in parts[first_answer + 1:])  # reasoning comes first
    usage = final_usage(events)
    assert usage["completion_tokens"] == 12  # reasoning counts as output
    if engine == "vllm":
        assert usage["completion_tokens_details"] == {"reasoning_tokens": 3}
    elif engine == "sglang":
        assert usage["reasoning_tokens"] == 3


@pytest.mark.parametrize("engine", ENGINES)
def test_non_streaming_chat_answer(emulator, engine):
    emu = emulator("--engine", engine, *FAST, "--reasoning-tokens", "2")
    status, _, raw = stream(emu.url, chat_body(engine, 7, streaming=False), path=CHAT)
    assert status == 200
    body = json.loads(raw)
    assert body["object"] == "chat.completion"
    message = body["choices"][0]["message"]
    assert message["role"] == "assistant" and body["choices"][0]["finish_reason"] == "length"
    assert len(message["content"].split()) == 5 and len(message[REASONING_FIELD[engine]].split()) == 2
    assert (body["usage"]["prompt_tokens"], body["usage"]["completion_tokens"]) == (PROMPT_WORDS, 7)


@pytest.mark.parametrize("engine", ENGINES)
def test_endpoints_leave_out_a_route_as_not_found(emulator, engine):
    emu = emulator("--engine", engine, *FAST, "--endpoints", "completions")
    status, _, raw = stream(emu.url, chat_body(engine, 4, streaming=False), path=CHAT)
    assert status == 404 and b"error" in raw.lower()
    completion = {"model": "emulator", "prompt": "a text prompt", "max_tokens": 4}
    assert stream(emu.url, completion)[0] == 200
    chat_only = emulator("--engine", engine, *FAST, "--endpoints", "chat")
    assert stream(chat_only.url, completion)[0] == 404
    assert stream(chat_only.url, chat_body(engine, 4, streaming=False), path=CHAT)[0] == 200


@pytest.mark.parametrize("engine", ENGINES)
def test_text_prompts_only_refuses_token_ids(emulator, engine):
    emu = emulator("--engine", engine, *FAST, "--text-prompts-only")
    status, _, raw = stream(emu.url, {"model": "emulator", "prompt": [1, 2, 3], "max_tokens": 4})
    assert status == 400 and b"text prompts only" in raw
    assert stream(emu.url, {"model": "emulator", "prompt": "one two three", "max_tokens": 4})[0] == 200
