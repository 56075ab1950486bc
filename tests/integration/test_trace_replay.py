"""`loadgen run --trace` end to end against the emulator over loopback: requests leave at the trace's
timestamps (scaled), every prompt has exactly the trace's input length as the server counts it, every
reply its output length, and the report measures the run against the trace's schedule."""

import urllib.request
from pathlib import Path

import numpy as np
import orjson
import pytest

from loadgen.analysis.load import held_rate
from loadgen.config import RunConfig
from loadgen.records import read_journal
from loadgen.wiring import workload_spec
from loadgen.workloads import load_workload, read_trace

TRACE = Path(__file__).resolve().parents[2] / "workloads" / "example_trace.jsonl"
SPEED = 2.0
#: a busy 2-core machine may send a request this late (sends never go early)
LATE_TOLERANCE_NS = 250_000_000


def server_prompt_tokens(url: str, ids: list[int]) -> int:
    """The emulator's own count of a prompt: usage.prompt_tokens of a one-token completion."""
    body = orjson.dumps({"prompt": ids, "max_tokens": 1})
    request = urllib.request.Request(url + "/v1/completions", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return orjson.loads(response.read())["usage"]["prompt_tokens"]


@pytest.mark.parametrize("workers", [1, 2])
def test_trace_replay_keeps_the_schedule_and_the_lengths(emulator, run_loadgen, tmp_path, workers):
    emu = emulator("--ttft-ms", "10", "--step-ms", "4")
    rows = read_trace(TRACE).rows
    warmup = 2
    report, text = run_loadgen(url=emu.url, trace=TRACE, trace_speed=SPEED, warmup=warmup, workload="sample",
                               workers=workers)
    records = list(read_journal(tmp_path / "out" / "requests.jsonl"))
    measured = sorted((r for r in records if not r.warmup), key=lambda r: (r.scheduled_ns, r.request_id))
    assert len(measured) == len(rows) - warmup and sum(r.warmup for r in records) == warmup
    assert all(r.ok for r in records)

    # sent at the trace's offsets from the first measured row, divided by the speed
    at = np.array([r.at_s for r in rows[warmup:]])
    expected = ((at - at[0]) / SPEED * 1e9).astype(np.int64)
    scheduled = np.array([r.scheduled_ns for r in measured]) - measured[0].scheduled_ns
    assert np.array_equal(scheduled, expected)
    late = np.array([r.sent_ns - r.scheduled_ns for r in measured])
    assert late.min() >= 0 and late.max() < LATE_TOLERANCE_NS

    # lengths: rows with equal timestamps may be sent in either order, so compare (send time, lengths) sets
    sent = sorted(zip(scheduled.tolist(), (r.prompt_tokens for r in measured), (r.output_tokens for r in measured)))
    traced = sorted(zip(expected.tolist(), (r.input_tokens for r in rows[warmup:]),
                        (r.output_tokens for r in rows[warmup:])))
    assert sent == traced
    summary = report["summary"]
    assert summary["input_tokens"] == sum(r.input_tokens for r in rows[warmup:])
    assert summary["output_tokens"] == sum(r.output_tokens for r in rows[warmup:])

    # the report: achieved against the trace's schedule, and what was replayed
    load = report["load"]
    span_s = (at[-1] - at[0]) / SPEED
    assert load["target_rate"] == pytest.approx((len(at) - 1) / span_s)
    assert load == pytest.approx(held_rate(measured, load["target_rate"]))
    assert load["scheduled_rate"] == pytest.approx(load["target_rate"])
    info = report["config"]["workload_info"]["trace"]
    assert (info["file"], info["format"], info["measured_rows"], info["warmup_rows"], info["speed"]) == \
        (str(TRACE), "mooncake", len(rows) - warmup, warmup, SPEED)
    assert info["replay_span_s"] == pytest.approx(span_s) and report["config"]["concurrency"] is None
    assert report["config"]["num_requests"] == len(rows) - warmup
    assert f"trace {TRACE.name} x2" in text and "req/s" in text


def test_the_server_counts_every_trace_prompt_at_its_input_length(emulator):
    emu = emulator("--ttft-ms", "1", "--step-ms", "1")
    config = RunConfig(url=emu.url, output_dir=Path("unused"), trace=TRACE, workload="sample")
    workload = load_workload(workload_spec(config))
    counted = [server_prompt_tokens(emu.url, p.token_ids.tolist()) for p in workload.prompts]
    assert counted == [r.input_tokens for r in read_trace(TRACE).rows]


def test_a_trace_replays_as_chat_with_its_text_decoded(emulator, run_loadgen, tmp_path):
    """A gateway that routes only chat: each row's exact-length ids become its user message's text,
    whose own encoding is within a token or two of the trace's length; rows sharing hash-id blocks
    share their text's start; the replies keep the trace's output lengths."""
    rows = read_trace(TRACE).rows
    config = RunConfig(url=None, output_dir=Path("unused"), trace=TRACE, workload="sample", endpoint="chat")
    prompts = load_workload(workload_spec(config)).prompts
    assert all(p.messages and p.messages[-1]["role"] == "user" for p in prompts)
    assert all(abs(p.token_ids.size - r.input_tokens) <= 2 for p, r in zip(prompts, rows))
    shared = [(a, b) for a, b in zip(range(len(rows)), range(1, len(rows)))
              if rows[a].hash_ids[:1] and rows[a].hash_ids[:1] == rows[b].hash_ids[:1]]
    assert shared, "the example trace has rows sharing their first block"
    for a, b in shared:
        first, second = prompts[a].messages[-1]["content"], prompts[b].messages[-1]["content"]
        assert first[:1000] == second[:1000]

    emu = emulator("--ttft-ms", "5", "--step-ms", "2")
    report, _ = run_loadgen(url=emu.url, trace=TRACE, trace_speed=8.0, workload="sample", endpoint="chat")
    records = list(read_journal(tmp_path / "out" / "requests.jsonl"))
    assert len(records) == len(rows) and all(r.ok for r in records)
    assert sorted(r.output_tokens for r in records) == sorted(r.output_tokens for r in rows)
    assert report["chat"]["endpoint"] == "chat"
