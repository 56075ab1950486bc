"""Where llama-server puts output token ids on a streamed /v1/completions, and that the emulator's
llamacpp personality puts them there too: only with `"verbose": true`, one id per event in
`__verbose.tokens` (`return_tokens` alone adds none to a streamed event). Token events are held key
for key at every depth (tests/unit/emulator/test_vllm_chat_matches_real.py skeleton); the final
event's __verbose (generation settings) is not emulated and not compared."""

from __future__ import annotations

import json
import urllib.request

from tests.unit.emulator.test_vllm_chat_matches_real import skeleton

MAX_TOKENS = 6


def token_events(url: str, **fields) -> list[dict]:
    body = {"prompt": [100, 200, 300, 400], "max_tokens": MAX_TOKENS, "ignore_eos": True, "temperature": 0.0,
            "stream": True, **fields}
    request = urllib.request.Request(url + "/v1/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as resp:
        raw = resp.read().decode()
    events = [json.loads(block[len("data: "):]) for block in raw.split("\n\n") if block and block != "data: [DONE]"]
    return [e for e in events if e["choices"][0]["finish_reason"] is None]


def test_token_ids_go_where_llama_server_puts_them(llama_server_shared, emulator):
    real = llama_server_shared()
    emu = emulator("--engine", "llamacpp", "--ttft-ms", "1", "--step-ms", "1")
    for url in (real.url, emu.url):
        assert not any("__verbose" in e for e in token_events(url, return_tokens=True))
    real_events, emulated_events = token_events(real.url, verbose=True), token_events(emu.url, verbose=True)
    assert len(emulated_events) == MAX_TOKENS and 0 < len(real_events) <= MAX_TOKENS
    assert {str(skeleton(e)) for e in real_events} == {str(skeleton(e)) for e in emulated_events}
    for events in (real_events, emulated_events):
        assert all(len(e["__verbose"]["tokens"]) == 1 for e in events)
        counts = [e["__verbose"]["tokens_predicted"] for e in events]
        # the real server skips an event for a token whose text is an incomplete UTF-8 sequence
        assert counts == sorted(set(counts)) and counts[-1] <= MAX_TOKENS
    assert [e["__verbose"]["tokens_predicted"] for e in emulated_events] == list(range(1, MAX_TOKENS + 1))
