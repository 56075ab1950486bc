"""The SGLang and TensorRT-LLM personalities against real outputs (tests/unit/engines/real/), name for
name and field for field. No public output of the exact versions the recipes pin (SGLang 0.5.9,
TensorRT-LLM 1.2.1) was found, so each is held to the real outputs nearest its pin; where those
outputs come from a version whose source differs from the pin's, the difference is listed here
with its source, and the test fails on any other."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from .test_personalities import FakeGen, batch, events, params, personality

REAL = Path(__file__).resolve().parents[1] / "engines" / "real"


def real_json(engine: str, name: str):
    return json.loads((REAL / engine / name).read_text())


def key_tree(value) -> object:
    """A JSON value's keys at every level (lists by their first element), values left out."""
    if isinstance(value, dict):
        return {k: key_tree(v) for k, v in value.items()}
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return [key_tree(value[0])]
    return None


# -- SGLang (pin 0.5.9) --------------------------------------------------------------------------

SERVER_INFO = "main-2026-03-03-g753da2753/server_info.json"  # main, 8 days after 0.5.9


def _arguments(info: dict) -> set[str]:
    """The server arguments: the keys the top level shares with every scheduler state."""
    return set(info) & set(info["internal_states"][0])


def test_sglang_server_info_has_the_real_bodys_fields():
    """The keys beside the arguments, at the top and per scheduler, are the real body's (speculation
    off: no avg_spec_accept_length in either); every argument the emulator gives is one of the real
    body's 333, with a value of the same JSON type (or null where the real server had none)."""
    real = real_json("sglang", SERVER_INFO)
    emulated = personality("sglang", accept=())[0].server_info()
    assert set(emulated) - _arguments(emulated) == set(real) - _arguments(real)
    state, real_state = emulated["internal_states"][0], real["internal_states"][0]
    assert set(state) - _arguments(emulated) == set(real_state) - _arguments(real)
    assert set(state["memory_usage"]) == set(real_state["memory_usage"])
    for key in _arguments(emulated):
        assert key in real, key
        if real[key] is not None and emulated[key] is not None:
            assert type(emulated[key]) is type(real[key]), key
    assert type(emulated["version"]) is type(real["version"]) and emulated["status"] == real["status"]


def test_sglang_server_info_while_speculating_adds_the_average():
    p, counters = personality("sglang", accept=(1.0,))
    counters.add("spec_drafts", 4)
    counters.add("spec_accepted_tokens", 4)
    assert p.server_info()["internal_states"][0]["avg_spec_accept_length"] == 2.0


#: label keys the emulator's scheduler gauges carry that no real output shows: SGLang's collector adds
#: moe_ep_rank (python/sglang/srt/metrics/collector.py at 00ae9c15, read for the emulator); the 0.5.1
#: and 2025-09 outputs have none; unverified at 0.5.9
LABELS_FROM_SOURCE = {"moe_ep_rank"}
#: labels a real output carries for its deployment, not its version: dp_rank with DP attention, pid on
#: gauges without multiprocess_mode="mostrecent" in a multi-process (DP) deployment
DEPLOYMENT_LABELS = {"dp_rank", "pid"}


def _families(text: str) -> dict[str, tuple[str, str, set[str]]]:
    """family -> (type, help, label keys of its samples)."""
    return {f.name: (f.type, f.documentation, {k for s in f.samples for k in s.labels})
            for f in text_string_to_metric_families(text)}


def test_sglang_metrics_name_type_help_and_labels_as_the_real_ones():
    """Every family the emulator exports that a real 0.5.x output shows: the same type, HELP text
    (where the output kept it) and label keys, bar the listed ones."""
    p, _ = personality("sglang", accept=(0.8,))
    emulated = _families(p.metrics_text())
    compared = 0
    for name in ("0.5.1/metrics-spec-unknown.txt", "unknown-2025-09/metrics-spec-unknown.txt",
                 "unknown-2025-09/metrics-spec-unknown-2.txt"):
        for family, (kind, help_text, labels) in _families((REAL / "sglang" / name).read_text()).items():
            if family not in emulated:
                continue
            compared += 1
            got_kind, got_help, got_labels = emulated[family]
            # a pasted excerpt may have lost its # TYPE and # HELP lines
            assert kind in ("unknown", got_kind) and help_text in ("", got_help), family
            assert got_labels - LABELS_FROM_SOURCE == labels - DEPLOYMENT_LABELS, family
    assert compared >= 3


#: how the emulator's chat stream (serving_chat.py / sse_utils.py msgspec StreamChunk, read at 004c82e,
#: after 0.5.9) differs from the 2025-12 output (<= 0.5.6.post2, pydantic-dumped chunks): that output
#: writes the delta's tool_calls as null and puts usage on the role and finish chunks too, its
#: content chunks' usage without prompt_tokens_details and reasoning_tokens. Unverified at 0.5.9.
CHAT_DIFFERENCES = {"delta.tool_calls", "role chunk usage", "finish chunk usage", "content usage details"}


def test_sglang_chat_stream_as_the_real_one_bar_the_listed_differences():
    real = [json.loads(line) for line in (REAL / "sglang" / "unknown-2025-12" / "stream-payloads.txt").read_text()
            .splitlines() if line.startswith("{")]
    p, _ = personality("sglang", accept=(0.5,))
    par = params(continuous_usage=True, include_usage=True)
    enc = p.chat_stream_encoder("c91d", 1765734075, par)
    emulated = [e for e in events(enc.events(["x"], [], None, 1, 1) + enc.tail(FakeGen(par, emitted=1), 0))
                if isinstance(e, dict)]
    role, content, finish, closing = emulated
    differences = set()
    for ours, theirs, what in ((role, real[0], "role chunk"), (content, real[1], "content chunk"),
                               (finish, real[-2], "finish chunk"), (closing, real[-1], "closing usage chunk")):
        assert set(ours) - {"usage"} == set(theirs) - {"usage"}, what
        if ours["choices"]:
            assert set(ours["choices"][0]) == set(theirs["choices"][0]), what
            if set(ours["choices"][0]["delta"]) != set(theirs["choices"][0]["delta"]):
                differences.add("delta.tool_calls")
        if "usage" in theirs and "usage" not in ours:
            differences.add(f"{what.split()[0]} chunk usage")
        elif "usage" in ours and set(ours["usage"]) != set(theirs["usage"]):
            differences.add("content usage details")
    assert set(closing["usage"]) == set(real[-1]["usage"])
    assert differences == CHAT_DIFFERENCES


# -- TensorRT-LLM (pin 1.2.1) --------------------------------------------------------------------

def _iteration(speculative: bool) -> dict:
    p, _ = personality("trtllm", accept=(0.5,) if speculative else ())
    p.on_batch(batch(decode=2, drafts=2, accepted=1, tokens=3) if speculative else batch(decode=2, tokens=2),
               1_000_000)
    [entry] = p.drain()
    return entry


def test_trtllm_iteration_entry_has_the_real_entrys_fields_in_its_order():
    """Speculation off: the keys of the real 1.0.0rc4 entry at every level, sorted as the executor
    writes them, specDecodingStats and staticBatchingStats null."""
    real = real_json("trtllm", "1.0.0rc4/iteration_stats-trt-backend.json")
    entry = _iteration(speculative=False)
    assert key_tree(entry) == key_tree(real)
    assert list(entry) == list(real) and list(entry["kvCacheStats"]) == list(real["kvCacheStats"])
    assert entry["specDecodingStats"] is None and entry["staticBatchingStats"] is None


def test_trtllm_iteration_entry_while_speculating():
    """specDecodingStats with the executor's six keys (cpp/tensorrt_llm/executor/serialization.cpp,
    serializeSpecDecodingStats; no real output with speculation on was found)."""
    spec = _iteration(speculative=True)["specDecodingStats"]
    assert list(spec) == sorted(["numDraftTokens", "numAcceptedTokens", "numRequestsWithDraftTokens",
                                 "acceptanceLength", "iterLatencyMS", "draftOverhead"])


def test_trtllm_completion_has_the_real_responses_fields():
    """The 1.2-rc-era response's keys, usage with prompt_tokens_details, and avg_decoded_tokens_per_iter
    1.0 without speculation, as NVIDIA's own response shows."""
    real = real_json("trtllm", "main-2025-11-25/completion.json")
    p, _ = personality("trtllm", accept=())
    body = p.completion_body(FakeGen(params(), emitted=4, index=4), "abcd", [], "length", 0)
    assert key_tree(body) == key_tree(real)
    assert body["choices"][0]["avg_decoded_tokens_per_iter"] == real["choices"][0]["avg_decoded_tokens_per_iter"]
