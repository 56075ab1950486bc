"""`loadgen emulate --engine vllm|sglang|trtllm|llamacpp` over real loopback sockets: each engine's
chunk shapes and field sets, token accounting, metrics endpoints and their arithmetic, per-category
acceptance profiles and --stream-interval merging.

A small raw HTTP/1.1 client reads the chunked response (one HTTP chunk per SSE event, as the engines
frame them). Which events one engine step wrote together is told by --send-timestamps: every event
of one socket write carries the same emulator_sent_ns.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

CHUNK = {
    "vllm": {"id", "object", "created", "model", "choices", "usage"},  # usage: continuous_usage_stats
    "sglang": {"id", "object", "created", "model", "choices", "usage"},
    "trtllm": {"id", "object", "created", "model", "choices", "usage"},
    "llamacpp": {"choices", "created", "model", "system_fingerprint", "object", "id"},
}
CHOICE = {
    "vllm": ["index", "text", "logprobs", "finish_reason", "stop_reason", "prompt_token_ids", "token_ids"],
    "sglang": ["index", "text", "logprobs", "finish_reason", "matched_stop"],
    "trtllm": ["index", "text", "token_ids", "logprobs", "finish_reason", "stop_reason", "avg_decoded_tokens_per_iter"],
    "llamacpp": ["text", "index", "logprobs", "finish_reason"],
}
# what each engine needs sent to put cumulative usage on every chunk (llama-server has no such option)
CONTINUOUS = {
    "vllm": {"stream_options": {"include_usage": True, "continuous_usage_stats": True}},
    "sglang": {"stream_options": {"continuous_usage_stats": True}},
    "trtllm": {"stream_options": {"continuous_usage_stats": True}},
    "llamacpp": {},
}


def stream(url: str, body: dict, headers: dict[str, str] | None = None,
           path: str = "/v1/completions") -> tuple[int, list[list], bytes]:
    """POST `path`; (status, [[event] per HTTP chunk], raw body when not chunked)."""
    host, port = re.match(r"http://([^:/]+):(\d+)", url).groups()
    payload = json.dumps(body).encode()
    head = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(payload)}\r\nConnection: close\r\n{head}\r\n".encode() + payload)
        data = bytearray()
        while chunk := sock.recv(1 << 16):
            data += chunk
    header, _, rest = bytes(data).partition(b"\r\n\r\n")
    status = int(header.split(b" ", 2)[1])
    if b"chunked" not in header.lower():
        return status, [], rest
    chunks = []
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        piece, rest = rest[:size], rest[size + 2:]
        events = []
        for block in piece.decode().split("\n\n"):
            if block:
                text = block.removeprefix("data: ")
                events.append(text if text == "[DONE]" else json.loads(text))
        chunks.append(events)
    return status, chunks, b""


def get(url: str, path: str):
    with urllib.request.urlopen(url + path, timeout=10) as resp:
        body = resp.read()
        return json.loads(body) if body and resp.headers.get_content_type() == "application/json" else body.decode()


def prom(text: str) -> dict[str, float]:
    """Prometheus text -> {name{labels}: value}, and {name: sum over series}."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
            name = key.split("{", 1)[0]
            if "{" in key:
                out[name] = out.get(name, 0.0) + float(value)
    return out


def token_events(chunks: list[list]) -> list[list[dict]]:
    """The events that carry a token choice (not usage-only, not [DONE], not llama.cpp's final summary
    event), grouped by the socket write that sent them (emulator_sent_ns), else one per group."""
    out: list[list[dict]] = []
    last = None
    for events in chunks:
        for e in events:
            if not (isinstance(e, dict) and e.get("choices")) or (e["choices"][0]["finish_reason"] and "timings" in e):
                continue
            sent = e.get("emulator_sent_ns")
            if sent is not None and sent == last:
                out[-1].append(e)
            else:
                out.append([e])
            last = sent
    return out


def strip(event: dict) -> dict:
    return {k: v for k, v in event.items() if not k.startswith("emulator_")}


# -- each engine's stream --------------------------------------------------------------------------

@pytest.mark.parametrize("engine", ["vllm", "sglang", "trtllm", "llamacpp"])
def test_stream_shapes_and_token_accounting(emulator, engine):
    emu = emulator("--engine", engine, "--ttft-ms", "1", "--step-ms", "1", "--accept", "0.7,0.5", "--seed", "3",
                   "--send-timestamps")
    max_tokens = 40
    body = {"model": "emulator", "prompt": [1, 2, 3, 4], "max_tokens": max_tokens, "stream": True,
            "ignore_eos": True, **CONTINUOUS[engine]}
    status, chunks, _ = stream(emu.url, body)
    assert status == 200
    assert chunks[-1][-1] == "[DONE]"
    steps = token_events(chunks)
    events = [strip(e) for step in steps for e in step]
    assert all(len(c) == 1 for c in chunks)  # one HTTP chunk per SSE event
    for e in events:
        assert set(e) == CHUNK[engine], e
        assert list(e["choices"][0]) == CHOICE[engine]
        assert e["model"] == "emulator" and e["object"] == "text_completion"
    assert len({e["id"] for e in events}) == 1
    prefix = "chatcmpl-" if engine == "llamacpp" else "cmpl-"
    assert events[0]["id"].startswith(prefix)
    if engine == "llamacpp":
        # one event per token; a step's tokens leave in one write (one HTTP chunk)
        assert len(events) == max_tokens
        assert len(steps[0]) == 1 and max(len(s) for s in steps) > 1
        final = chunks[-2][0]
        assert final["choices"][0] == {"text": "", "index": 0, "logprobs": None, "finish_reason": "length"}
        assert final["usage"] == {"completion_tokens": max_tokens, "prompt_tokens": 4, "total_tokens": 44,
                                  "prompt_tokens_details": {"cached_tokens": 0}}
        per_step = [len(s) for s in steps]
    else:
        counts = [e["usage"]["completion_tokens"] for e in events]
        per_step = [b - a for a, b in zip([0] + counts, counts)]
        assert counts[-1] == max_tokens and per_step[0] == 1 and all(len(s) == 1 for s in steps)
        assert events[-1]["choices"][0]["finish_reason"] == "length"
        assert all(e["choices"][0]["finish_reason"] is None for e in events[:-1])
    assert sum(per_step) == max_tokens and max(per_step) <= 3 and max(per_step[1:-1]) > 1
    if engine in ("vllm", "trtllm"):  # the final usage chunk (trtllm: include_usage defaults to true)
        usage_chunk = chunks[-2][0]
        assert usage_chunk["choices"] == [] and usage_chunk["usage"]["completion_tokens"] == max_tokens
    if engine == "sglang":  # continuous usage without include_usage: no final usage chunk
        assert chunks[-2][0]["choices"][0]["finish_reason"] == "length"
    models = get(emu.url, "/v1/models")
    assert models["data"][0]["id"] == "emulator"
    assert models["data"][0]["owned_by"] == {"vllm": "vllm", "sglang": "sglang", "trtllm": "tensorrt_llm",
                                             "llamacpp": "llamacpp"}[engine]
    if engine == "llamacpp":
        assert models["models"][0]["name"] == "emulator"
        assert get(emu.url, "/health") == {"status": "ok"}


def test_sglang_usage_shapes_and_request_model(emulator):
    emu = emulator("--engine", "sglang", "--ttft-ms", "1", "--step-ms", "1")
    _, chunks, _ = stream(emu.url, {"model": "asked-for", "prompt": "a b c", "max_tokens": 5, "stream": True,
                                    "stream_options": {"include_usage": True}})
    events = [e for c in chunks for e in c]
    assert all(len(c) == 1 for c in chunks)
    assert all(e["usage"] is None for e in events if isinstance(e, dict) and e["choices"])
    assert {e["model"] for e in events if isinstance(e, dict)} == {"asked-for"}
    assert events[-2]["choices"] == [] and events[-2]["usage"]["completion_tokens"] == 5
    assert "prompt_tokens_details" not in events[-2]["usage"]   # exclude_none on the final usage chunk
    assert get(emu.url, "/health_generate") == ""


# -- metrics endpoints and their arithmetic --------------------------------------------------------

def _run(url: str, n: int, max_tokens: int, headers: dict | None = None, extra: dict | None = None,
         concurrency: int = 8) -> list:
    body = {"model": "emulator", "prompt": [1, 2, 3], "max_tokens": max_tokens, "stream": True, "ignore_eos": True,
            **(extra or {})}
    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(lambda _: stream(url, body, headers)[1], range(n)))


def test_sglang_windowed_gauges_and_cumulative_server_info(emulator, tmp_path):
    profile = tmp_path / "p.json"
    profile.write_text('{"all": [1.0, 1.0], "none": [0.0, 0.0]}')
    emu = emulator("--engine", "sglang", "--ttft-ms", "1", "--step-ms", "1", "--accept", "0.5,0.5",
                   "--accept-profile", str(profile))
    # every "all" decode step makes 3 tokens (1 + 2 accepted): 1 + 3 * 80 tokens = 80 decode steps each,
    # 80 ms: at least one whole window (40 x 1 ms) of them
    runs_all = _run(emu.url, 8, 241, {"X-Loadgen-Category": "all"}, CONTINUOUS["sglang"])
    metrics = prom(get(emu.url, "/metrics"))
    labels = 'engine_type="unified",model_name="emulator",moe_ep_rank="0",pp_rank="0",tp_rank="0"'
    key = f"sglang:spec_accept_length{{{labels}}}"
    assert metrics[key] == 3.0 and metrics["sglang:spec_accept_rate"] == 1.0
    assert metrics["sglang:gen_throughput"] > 0
    # then only rejections (120 steps of 1 token), longer than two windows: the gauges follow the recent
    # window, /server_info stays cumulative since start
    runs_none = _run(emu.url, 8, 121, {"X-Loadgen-Category": "none"}, CONTINUOUS["sglang"])
    metrics = prom(get(emu.url, "/metrics"))
    assert metrics[key] == 1.0 and metrics["sglang:spec_accept_rate"] == 0.0
    steps_all = sum(len(token_events(c)) - 1 for c in runs_all)    # decode steps (the prefill chunk excluded)
    steps_none = sum(len(token_events(c)) - 1 for c in runs_none)
    assert steps_all == 8 * 80 and steps_none == 8 * 120
    [state] = get(emu.url, "/server_info")["internal_states"]
    assert state["avg_spec_accept_length"] == pytest.approx((3 * steps_all + steps_none) / (steps_all + steps_none))
    assert metrics["sglang:generation_tokens_total"] == 8 * 241 + 8 * 121
    assert metrics["sglang:prompt_tokens_total"] == 16 * 3


def test_trtllm_iteration_stats_drain_and_prometheus_counters(emulator):
    emu = emulator("--engine", "trtllm", "--engine-version", "1.3.0rc", "--ttft-ms", "1", "--step-ms", "1",
                   "--accept", "0.8,0.6,0.4")
    get(emu.url, "/metrics")  # start from an empty queue
    runs = _run(emu.url, 12, 60, extra={"stream_options": {"continuous_usage_stats": True}})
    iterations = get(emu.url, "/metrics")
    assert isinstance(iterations, list) and iterations
    assert get(emu.url, "/metrics") == []          # drained: the second read right after is empty
    its = [it["iter"] for it in iterations]
    assert its == sorted(its) and len(set(its)) == len(its)
    for it in iterations:
        assert {"iter", "iterLatencyMS", "numActiveRequests", "numQueuedRequests", "kvCacheStats",
                "inflightBatchingStats", "specDecodingStats"} <= set(it)
        ib, spec = it["inflightBatchingStats"], it["specDecodingStats"]
        assert ib["numScheduledRequests"] == ib["numContextRequests"] + ib["numGenRequests"] > 0
        n = spec["numRequestsWithDraftTokens"]
        assert spec["numDraftTokens"] == 3 * n
        assert spec["acceptanceLength"] == ((spec["numAcceptedTokens"] + n) / n if n else 0.0)
    # every request's prefill and decode steps are in the iterations, exactly once
    assert sum(it["inflightBatchingStats"]["numContextRequests"] for it in iterations) == 12
    decode_steps = sum(len(token_events(c)) - 1 for c in runs)
    assert sum(it["inflightBatchingStats"]["numGenRequests"] for it in iterations) == decode_steps
    counters = prom(get(emu.url, "/prometheus/metrics"))
    drafted = sum(it["specDecodingStats"]["numDraftTokens"] for it in iterations)
    accepted = sum(it["specDecodingStats"]["numAcceptedTokens"] for it in iterations)
    assert counters["trtllm_spec_decode_num_draft_tokens_total"] == drafted == 3 * decode_steps
    assert counters["trtllm_spec_decode_num_accepted_tokens_total"] == accepted
    per_pos = [counters[f'trtllm_spec_decode_accepted_tokens_total{{engine_type="trtllm",model_name="emulator",'
                        f'token_position="{i}"}}'] for i in range(3)]
    assert sum(per_pos) == accepted and per_pos[0] >= per_pos[1] >= per_pos[2]
    assert counters["trtllm_spec_decode_drafted_tokens_total"] == drafted
    assert counters["trtllm_generation_tokens_total"] == 12 * 60
    assert "trtllm_spec_decode_acceptance_length" in counters
    assert get(emu.url, "/version")["version"]


def test_trtllm_rejects_unknown_fields_and_requires_model(emulator):
    emu = emulator("--engine", "trtllm", "--ttft-ms", "1", "--step-ms", "1")
    status, _, raw = stream(emu.url, {"model": "emulator", "prompt": [1], "max_tokens": 2, "return_token_ids": True})
    assert status == 400
    error = json.loads(raw)["error"]
    assert "return_token_ids" in error and "Extra inputs are not permitted" in error
    status, _, raw = stream(emu.url, {"prompt": [1], "max_tokens": 2})
    assert status == 400 and "'model'" in json.loads(raw)["error"]
    status, _, raw = stream(emu.url, {"model": "any", "prompt": [1], "max_tokens": 3, "detokenize": False})
    body = json.loads(raw)
    assert status == 200 and len(body["choices"][0]["token_ids"]) == 3 and body["choices"][0]["text"] == ""
    assert body["model"] == "any" and body["usage"]["completion_tokens"] == 3


def test_trtllm_with_several_workers_is_one_error_line():
    done = subprocess.run([sys.executable, "-m", "loadgen", "emulate", "--engine", "trtllm", "--workers", "2",
                           "--port", "0"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "--workers 1" in lines[0]


def test_llamacpp_timings_agree_with_the_counters(emulator):
    emu = emulator("--engine", "llamacpp", "--ttft-ms", "1", "--step-ms", "1", "--accept", "0.8,0.6,0.4",
                   "--send-timestamps")
    runs = _run(emu.url, 10, 50)
    finals = [c[-2][0] for c in runs]
    verify_steps = 0
    for chunks, final in zip(runs, finals):
        steps = token_events(chunks)
        assert sum(len(s) for s in steps) == 50 == final["timings"]["predicted_n"]
        t = final["timings"]
        # a draft of 3 per decode step, cut (as llama-server does) to the tokens still allowed minus one
        allowed = [min(3, 50 - 1 - sum(len(s) for s in steps[:i])) for i in range(1, len(steps))]
        assert t["draft_n"] == sum(a for a in allowed if a > 0)
        verify_steps += sum(a > 0 for a in allowed)
        # so accepted drafts are exactly the step sizes minus the bonus token
        assert t["draft_n_accepted"] == sum(len(s) - 1 for s in steps[1:])
    metrics = prom(get(emu.url, "/metrics"))
    assert metrics["llamacpp:spec_decode_num_draft_tokens_total"] == sum(f["timings"]["draft_n"] for f in finals)
    assert metrics["llamacpp:spec_decode_num_accepted_tokens_total"] == \
        sum(f["timings"]["draft_n_accepted"] for f in finals)
    assert metrics["llamacpp:spec_decode_num_drafts_total"] == verify_steps
    assert metrics["llamacpp:tokens_predicted_total"] == 500 and metrics["llamacpp:prompt_tokens_total"] == 30
    assert metrics["llamacpp:spec_decode_num_accepted_tokens_per_pos_total"] == \
        metrics["llamacpp:spec_decode_num_accepted_tokens_total"]
    assert metrics["llamacpp:n_decode_total"] >= 1 and metrics["llamacpp:requests_processing"] == 0
    labelled = [k for k in metrics if k.startswith("llamacpp:") and "{" in k]
    assert labelled and all(re.fullmatch(r'[^{]+\{position="\d"\}', k) for k in labelled)


# -- acceptance profiles and stream interval -------------------------------------------------------

def test_each_category_gets_its_own_acceptance(emulator, tmp_path):
    profile = {"easy": [0.9, 0.8, 0.7], "hard": [0.5, 0.3, 0.1]}
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(profile))
    emu = emulator("--ttft-ms", "1", "--step-ms", "1", "--accept", "0.8,0.6,0.4", "--accept-profile", str(path),
                   "--seed", "11")
    for category, probs in profile.items():
        expected = 1 + probs[0] + probs[0] * probs[1] + probs[0] * probs[1] * probs[2]
        runs = _run(emu.url, 16, 500, {"X-Loadgen-Category": category}, CONTINUOUS["vllm"], concurrency=16)
        sizes = []
        for chunks in runs:
            counts = [e[0]["usage"]["completion_tokens"] for e in token_events(chunks)]
            steps = [b - a for a, b in zip(counts, counts[1:])]
            sizes += steps[:-1]  # decode steps; the last may be cut short by max_tokens
        assert len(sizes) > 2000
        assert sum(sizes) / len(sizes) == pytest.approx(expected, rel=0.03)
    metrics = prom(get(emu.url, "/metrics"))
    assert metrics["vllm:spec_decode_num_drafts_total"] > 4000  # the server counters count every category


def test_stream_interval_merges_steps_but_not_the_counters(emulator):
    emu = emulator("--ttft-ms", "1", "--step-ms", "1", "--accept", "1.0,1.0", "--stream-interval", "4")
    # 1 + 3 * 10 tokens: prefill, then 10 decode steps of 3 tokens, sent after steps 4, 8 and 10
    _, chunks, _ = stream(emu.url, {"prompt": [1, 2], "max_tokens": 31, "stream": True, **CONTINUOUS["vllm"]})
    counts = [e[0]["usage"]["completion_tokens"] for e in token_events(chunks)]
    assert [b - a for a, b in zip([0] + counts, counts)] == [1, 12, 12, 6]
    metrics = prom(get(emu.url, "/metrics"))
    assert metrics["vllm:spec_decode_num_drafts_total"] == 10          # one per step, not per chunk
    assert metrics["vllm:spec_decode_num_accepted_tokens_total"] == 20  # server AL 3, tokens per chunk 12
    # llama-server has no stream interval: still one event per token, one write per step
    llama = emulator("--engine", "llamacpp", "--ttft-ms", "1", "--step-ms", "1", "--accept", "1.0,1.0",
                     "--stream-interval", "4", "--send-timestamps")
    _, chunks, _ = stream(llama.url, {"prompt": [1, 2], "max_tokens": 31, "stream": True})
    assert [len(s) for s in token_events(chunks)] == [1] + [3] * 10


def test_stream_interval_with_random_acceptance(emulator):
    emu = emulator("--ttft-ms", "1", "--step-ms", "1", "--accept", "0.8,0.6,0.4", "--stream-interval", "3",
                   "--seed", "5")
    runs = _run(emu.url, 16, 300, extra=CONTINUOUS["vllm"], concurrency=16)
    sizes = []
    for chunks in runs:
        counts = [e[0]["usage"]["completion_tokens"] for e in token_events(chunks)]
        sizes += [b - a for a, b in zip(counts, counts[1:])][:-1]
    metrics = prom(get(emu.url, "/metrics"))
    server_al = 1 + metrics["vllm:spec_decode_num_accepted_tokens_total"] / metrics["vllm:spec_decode_num_drafts_total"]
    assert server_al == pytest.approx(1 + 0.8 + 0.8 * 0.6 + 0.8 * 0.6 * 0.4, rel=0.04)
    assert sum(sizes) / len(sizes) == pytest.approx(3 * server_al, rel=0.04)   # ~N x AL per chunk


@pytest.mark.parametrize(("text", "fragment"), [
    ('{"coding": [0.9, 1.7]}', "'coding'"),
    ('{"coding": {"accept": [0.9, 0.7], "copy": 2}}', "'coding': copy must be a number"),  # an object entry
])
def test_bad_accept_profile_is_one_error_line(tmp_path, text, fragment):
    path = tmp_path / "bad.json"
    path.write_text(text)
    done = subprocess.run([sys.executable, "-m", "loadgen", "emulate", "--accept-profile", str(path), "--port", "0"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: accept profile") and fragment in lines[0]


def test_unknown_route_and_auth_use_the_engine_error_body(emulator):
    emu = emulator("--engine", "llamacpp", "--ttft-ms", "1", "--step-ms", "1", "--api-key", "k")
    with pytest.raises(urllib.error.HTTPError) as info:
        get(emu.url, "/v1/models")
    assert info.value.code == 401 and json.loads(info.value.read())["error"]["type"] == "authentication_error"


def test_trtllm_at_its_pin_counts_each_finished_request_in_the_unprefixed_metrics(emulator):
    """1.2.1 (the default): /prometheus/metrics has request_success_total and the histograms, no trtllm_*."""
    emu = emulator("--engine", "trtllm", "--ttft-ms", "1", "--step-ms", "1")
    _run(emu.url, 3, 8)
    counters = prom(get(emu.url, "/prometheus/metrics"))
    assert counters['request_success_total{engine_type="undefined",finished_reason="length",'
                    'model_name="undefined"}'] == 3
    assert counters['time_to_first_token_seconds_count{engine_type="undefined",model_name="undefined"}'] == 3
    assert not [name for name in counters if name.startswith("trtllm_")]


def test_an_engine_version_the_personality_does_not_speak_is_one_error_line():
    done = subprocess.run([sys.executable, "-m", "loadgen", "emulate", "--engine", "trtllm", "--engine-version",
                           "1.0.0", "--port", "0"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == ["error: --engine-version '1.0.0': --engine trtllm speaks 1.2.1, 1.3.0rc"]
