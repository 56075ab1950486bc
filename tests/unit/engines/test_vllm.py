import orjson
import pytest

from loadgen.engines import ENGINES, detect_engine, get_adapter

METRICS = """# HELP vllm:spec_decode_num_drafts_total Number of spec decoding drafts.
# TYPE vllm:spec_decode_num_drafts_total counter
vllm:spec_decode_num_drafts_total{engine="0",model_name="m"} 100.0
vllm:spec_decode_num_drafts_total{engine="1",model_name="m"} 20.0
# TYPE vllm:spec_decode_num_draft_tokens_total counter
vllm:spec_decode_num_draft_tokens_total{engine="0",model_name="m"} 360.0
# TYPE vllm:spec_decode_num_accepted_tokens_total counter
vllm:spec_decode_num_accepted_tokens_total{engine="0",model_name="m"} 150.0
# TYPE vllm:spec_decode_num_accepted_tokens_per_pos_total counter
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="m",position="0"} 80.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="m",position="1"} 50.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="m",position="10"} 1.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="m",position="2"} 20.0
"""


def test_vllm_request_asks_for_continuous_usage():
    body = get_adapter("vllm").request_body(model="m", prompt=[1, 2], max_tokens=7, temperature=0.0, ignore_eos=True)
    assert body["stream"] is True and body["prompt"] == [1, 2] and body["max_tokens"] == 7
    assert body["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}
    assert body["ignore_eos"] is True


def test_openai_adapter_sends_no_engine_only_fields():
    body = get_adapter("openai").request_body(model="m", prompt=[1], max_tokens=3, temperature=0.0, ignore_eos=True)
    assert set(body) == {"model", "prompt", "max_tokens", "temperature", "stream", "stream_options"}


def test_vllm_spec_counters_sum_engines_and_order_positions_numerically():
    counters = get_adapter("vllm").spec_counters(METRICS)
    assert counters.drafts == 120 and counters.draft_tokens == 360 and counters.accepted_tokens == 150
    assert counters.accepted_per_position[:3] == (80, 50, 20)
    assert counters.accepted_per_position[-1] == 1  # position 10 sorts last, not between 1 and 2


def test_vllm_without_speculation_has_no_counters():
    assert get_adapter("vllm").spec_counters("# TYPE vllm:num_requests_running gauge\n"
                                             'vllm:num_requests_running{engine="0"} 1.0\n') is None


@pytest.mark.parametrize("chunk, expected", [
    ({"choices": [{"text": "a b", "finish_reason": None}], "usage": {"completion_tokens": 5}}, (5, None, True, None)),
    ({"choices": [{"text": "", "finish_reason": "length", "token_ids": [1, 2, 3]}]}, (None, 3, True, "length")),
    ({"choices": [], "usage": {"completion_tokens": 9}}, (9, None, False, None)),
])
def test_decode_chunk(chunk, expected):
    fields = get_adapter("vllm").decode(orjson.dumps(chunk))
    assert (fields.completion_tokens, fields.tokens, fields.has_choice, fields.finish_reason) == expected


def test_decode_error_event():
    fields = get_adapter("vllm").decode(b'{"error": {"message": "boom", "code": 500}}')
    assert fields.error == "boom"


def test_decode_rejects_non_objects():
    with pytest.raises(ValueError):
        get_adapter("vllm").decode(b"[1, 2]")
    with pytest.raises(ValueError):
        get_adapter("vllm").decode(b"{not json")


def test_detect_engine_from_owned_by():
    assert detect_engine({"data": [{"id": "m", "owned_by": "vllm"}]}) == "vllm"
    assert detect_engine({"data": [{"id": "m", "owned_by": "someone"}]}) == "openai"
    assert set(ENGINES) >= {"vllm", "openai"}
