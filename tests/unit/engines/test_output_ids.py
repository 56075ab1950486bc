"""--output-ids: each engine is asked for its output token ids its own way, its adapter takes them
from the chunk it already parses, and the recorder keeps them in the record and the journal line."""

import numpy as np
import orjson
import pytest

from loadgen.config import RunConfig
from loadgen.engines import get_adapter
from loadgen.records import RequestRecord, StreamRecorder
from loadgen.sender import Sender
from loadgen.workloads import Prompt

from ...clock import FakeClock
from ..test_sender import FakeClient

#: two chunks as llama-server 0.3.36 (b1-0c1e570) streamed them for verbose: true, and its closing chunk's
#: start (the real final chunk also holds generation_settings and the prompt)
LLAMACPP_VERBOSE = [
    b'{"choices":[{"text":" olmas\xc4\xb1na","index":0,"logprobs":null,"finish_reason":null}],"created":1796167273,'
    b'"model":"target.gguf","system_fingerprint":"b1-0c1e570","object":"text_completion","id":"chatcmpl-cDAq",'
    b'"__verbose":{"index":0,"content":" olmas\xc4\xb1na","tokens":[122037],"stop":false,"id_slot":-1,'
    b'"tokens_predicted":1,"tokens_evaluated":4}}',
    b'{"choices":[{"text":"fort","index":0,"logprobs":null,"finish_reason":null}],"created":1796167273,'
    b'"model":"target.gguf","system_fingerprint":"b1-0c1e570","object":"text_completion","id":"chatcmpl-cDAq",'
    b'"__verbose":{"index":0,"content":"fort","tokens":[4057],"stop":false,"id_slot":-1,"tokens_predicted":2,'
    b'"tokens_evaluated":4}}',
    b'{"choices":[{"text":"","index":0,"logprobs":null,"finish_reason":"length"}],"created":1796167273,'
    b'"model":"target.gguf","object":"text_completion","usage":{"completion_tokens":2,"prompt_tokens":4,'
    b'"total_tokens":6},"id":"chatcmpl-cDAq","__verbose":{"index":0,"content":"","tokens":[],"stop":true},'
    b'"timings":{"predicted_n":2,"draft_n":1,"draft_n_accepted":1}}',
]


def _vllm_chunk(ids: list[int], n: int) -> bytes:
    return orjson.dumps({"choices": [{"index": 0, "text": "x", "finish_reason": None, "token_ids": ids}],
                         "usage": {"completion_tokens": n}})


@pytest.mark.parametrize("engine, chunks, ids", [
    ("vllm", [_vllm_chunk([11, 12], 2), _vllm_chunk([13], 3)], [11, 12, 13]),
    ("sglang", [_vllm_chunk([5], 1), _vllm_chunk([6, 7, 8], 4)], [5, 6, 7, 8]),
    ("trtllm", [_vllm_chunk([9, 9], 2)], [9, 9]),
    ("llamacpp", LLAMACPP_VERBOSE, [122037, 4057]),
])
def test_the_recorder_keeps_the_ids_each_engine_streams(engine, chunks, ids):
    record = RequestRecord(0, "c", 0, 4, 8, 0)
    recorder = StreamRecorder(record, get_adapter(engine))
    for t, chunk in enumerate(chunks):
        recorder.on_event(t, chunk)
    record = recorder.finish(None)
    assert record.output_ids.tolist() == ids
    assert RequestRecord.from_json(orjson.loads(orjson.dumps(record.to_json()))).output_ids == record.output_ids


def test_without_ids_the_record_and_its_journal_line_hold_none():
    record = RequestRecord(0, "c", 0, 4, 8, 0)
    recorder = StreamRecorder(record, get_adapter("llamacpp"))
    recorder.on_event(1, LLAMACPP_VERBOSE[0].split(b',"__verbose"')[0] + b"}")
    assert not recorder.finish(None).output_ids and "output_ids" not in record.to_json()


@pytest.mark.parametrize("engine, endpoint, fields", [
    ("vllm", "completions", {"return_token_ids": True}), ("vllm", "chat", {"return_token_ids": True}),
    ("sglang", "completions", {"return_token_ids": True}), ("llamacpp", "completions", {"verbose": True}),
    ("trtllm", "completions", {"detokenize": False}), ("trtllm", "chat", {}), ("openai", "completions", {}),
])
def test_each_engine_is_asked_its_own_way_and_only_with_output_ids(tmp_path, engine, endpoint, fields):
    bodies = []
    for asked in (True, False):
        client = FakeClient(FakeClock())
        config = RunConfig(url="http://x", output_dir=tmp_path, num_requests=1, output_ids=asked, endpoint=endpoint)
        sender = Sender(client, get_adapter(engine), "m", config, None, lambda record, done: None, clock=client.clock)
        prompt = Prompt("p", np.arange(8, dtype=np.int32), messages=({"role": "user", "content": "hi"},))
        client.clock.run(sender.send(prompt, 0, warmup=False))
        bodies.append(client.bodies[0])
    with_ids, without = bodies
    assert {k: v for k, v in with_ids.items() if k not in without} == fields
    assert {k: v for k, v in with_ids.items() if k in without} == without
