import orjson
import pytest

from loadgen.emulator import vllm


@pytest.mark.parametrize("continuous, ids", [(True, False), (False, True)])
def test_stream_encoder_equals_the_chunk_dict(continuous, ids):
    params = vllm.GenerationParams(model='m"odel', prompt_tokens=7, max_tokens=9, stream=True, include_usage=True,
                                   continuous_usage=continuous, return_token_ids=ids, ignore_eos=True)
    encoder = vllm.StreamEncoder("cmpl-3", 1700000000, params, "vllm-0.32.0-0000abcd")
    got = orjson.loads(encoder.chunk(' a "quoted" é', [5, 6], "length", 4, 7, b',"emulator_sent_ns":12'))
    expected = {"id": "cmpl-3", "object": "text_completion", "created": 1700000000, "model": 'm"odel',
                "choices": [{"index": 0, "text": ' a "quoted" é', "logprobs": None, "finish_reason": "length",
                             "stop_reason": None, "prompt_token_ids": None, "token_ids": [5, 6] if ids else None}]}
    if continuous:
        expected["usage"] = {"prompt_tokens": 7, "total_tokens": 11, "completion_tokens": 4}
    expected["emulator_sent_ns"] = 12
    assert got == expected
    assert list(got) == list(expected)  # field order as vLLM writes it


def test_request_validation():
    with pytest.raises(vllm.RequestRejected) as info:
        vllm.parse_completion_request({"model": "x", "prompt": [1]}, "served")
    assert info.value.status == 404
    with pytest.raises(vllm.RequestRejected):
        vllm.parse_completion_request({"prompt": []}, "served")
    with pytest.raises(vllm.RequestRejected):
        vllm.parse_completion_request({"prompt": [1], "max_tokens": 0}, "served")
    params = vllm.parse_completion_request({"prompt": [1, 2], "stream_options": {"continuous_usage_stats": True}},
                                           "served")
    assert params.max_tokens == 16 and not params.continuous_usage  # needs include_usage too, as in vLLM
