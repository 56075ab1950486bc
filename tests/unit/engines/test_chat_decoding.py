"""Each adapter's /v1/chat/completions body and chunk decoding, on chunks shaped as each engine
writes them (the source named at each), through the StreamRecorder as a run uses it."""

from pathlib import Path

import orjson
import pytest

from loadgen.engines import get_adapter
from loadgen.engines.trtllm import REQUEST_FIELDS
from loadgen.records import EstimatedChatRecorder, RequestRecord, StreamRecorder
from loadgen.workloads import load_tokenizer

CAPTURES = Path(__file__).parents[2] / "vllm" / "captures"
MESSAGES = [{"role": "user", "content": "Hi"}]


def chat_body(engine):
    return get_adapter(engine).chat_body(model="m", messages=MESSAGES, max_tokens=9, temperature=0.0, ignore_eos=True)


def record_of(engine: str, events: list[tuple[int, dict | bytes]], **kwargs) -> RequestRecord:
    recorder = StreamRecorder(RequestRecord(1, "c", 0, 5, 64, 0), get_adapter(engine), chat=True, **kwargs)
    for t, event in events:
        recorder.on_event(t, event if isinstance(event, bytes) else orjson.dumps(event))
    return recorder.finish(None)


def chunk(delta: dict, usage: dict | None = None, finish=None, **extra) -> dict:
    obj = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
           **extra}
    return obj | ({"usage": usage} if usage is not None else {})


@pytest.mark.parametrize("engine", ["openai", "vllm", "sglang", "trtllm", "llamacpp"])
def test_chat_body_is_the_completions_body_with_messages(engine):
    body = chat_body(engine)
    completions = get_adapter(engine).request_body(model="m", prompt=[1], max_tokens=9, temperature=0.0,
                                                   ignore_eos=True)
    assert body["messages"] == MESSAGES and "prompt" not in body
    assert {k: v for k, v in body.items() if k not in ("messages", "timings_per_token")} == \
        {k: v for k, v in completions.items() if k != "prompt"}
    if engine == "trtllm":  # its ChatCompletionRequest forbids extras too
        assert set(body) - {"messages"} <= REQUEST_FIELDS
    assert body.get("timings_per_token") is (True if engine == "llamacpp" else None)


def test_vllm_chat_capture_counts_every_token():
    """A real vLLM 0.32 chat stream (tests/vllm/captures): the role chunk holds usage 0, deltas of
    empty content still carry their token (usage says so), the usage-only last chunk holds none."""
    events = [(i, line[6:]) for i, line in enumerate((CAPTURES / "chat-stream-usage.sse").read_bytes().splitlines())
              if line.startswith(b"data: {")]
    record = record_of("vllm", events)
    final = orjson.loads(events[-1][1])["usage"]
    assert record.output_tokens == sum(record.chunk_tokens) == final["completion_tokens"]
    assert record.server_prompt_tokens == final["prompt_tokens"]
    assert record.first_answer_ns == record.first_ns == events[1][0] and record.reasoning_tokens == 0


def test_vllm_reasoning_capture_where_vllm_counts_none():
    """A real vLLM 0.32 stream with --reasoning-parser deepseek_r1 (tests/vllm/captures): every token
    streams as `reasoning` (empty text: the tiny model's token decodes to nothing), yet
    completion_tokens_details.reasoning_tokens stays 0, since vLLM counts only between <think> and
    </think>. The deltas' field decides then: all 16 are reasoning, and no answer came."""
    lines = (CAPTURES / "chat-reasoning-stream-usage.sse").read_bytes().splitlines()
    events = [(i, line[6:]) for i, line in enumerate(lines) if line.startswith(b"data: {")]
    record = record_of("vllm", events)
    assert record.output_tokens == sum(record.chunk_tokens) == 16
    assert record.reasoning_tokens == 16 and record.first_answer_ns == 0


def test_vllm_reasoning_counted_by_its_completion_tokens_details():
    """vLLM 0.32 chat_completion/serving.py: `reasoning` deltas, and in the step where reasoning ends
    one delta with both fields; continuous usage carries completion_tokens_details.reasoning_tokens."""
    def usage(n, reasoning):
        return {"prompt_tokens": 7, "completion_tokens": n,
                "completion_tokens_details": {"reasoning_tokens": reasoning}}
    record = record_of("vllm", [
        (10, chunk({"role": "assistant", "content": ""}, usage(0, 0))),
        (20, chunk({"reasoning": " a"}, usage(1, 1))),
        (30, chunk({"reasoning": " b c", "content": " d e"}, usage(5, 3))),  # 4 tokens: 2 reasoning, 2 answer
        (40, chunk({"content": " f"}, usage(6, 3), finish="length")),
        (41, {"choices": [], "usage": usage(6, 3)}),
    ])
    assert list(record.chunk_tokens) == [1, 4, 1] and list(record.chunk_ns) == [20, 30, 40]
    assert (record.reasoning_tokens, record.output_tokens) == (3, 6)
    assert (record.first_ns, record.first_answer_ns) == (20, 30)


def test_sglang_reasoning_and_content_chunks_of_one_step():
    """SGLang serving_chat.py _generate_stream_content: a step's reasoning chunk, then its content
    chunk, both with the step's cumulative usage (reasoning_tokens at the top of usage)."""
    def usage(n, reasoning):
        return {"prompt_tokens": 4, "completion_tokens": n, "reasoning_tokens": reasoning}
    record = record_of("sglang", [
        (10, chunk({"role": "assistant", "content": ""})),
        (20, chunk({"reasoning_content": " a b"}, usage(2, 2))),
        (30, chunk({"reasoning_content": " c"}, usage(5, 3))),
        (31, chunk({"content": " d e"}, usage(5, 3))),  # the same step: no tokens of its own, but the answer began
        (40, chunk({}, finish="length")),
        (41, {"choices": [], "usage": usage(5, 3)}),
    ])
    assert list(record.chunk_tokens) == [2, 3] and record.output_tokens == 5
    assert (record.reasoning_tokens, record.first_answer_ns) == (3, 31)


def test_trtllm_reasoning_without_a_count_is_split_by_characters():
    """TRT-LLM postprocess_handlers.py chat_stream_post_processor: DeltaMessage(content=...,
    reasoning_content=...) per iteration, usage without reasoning tokens: the crossing step's tokens
    are shared out by the characters of each part."""
    def usage(n):
        return {"prompt_tokens": 4, "completion_tokens": n, "total_tokens": n + 4}
    record = record_of("trtllm", [
        (10, chunk({"role": "assistant"}, usage(0))),
        (20, chunk({"content": "", "reasoning_content": " a"}, usage(1))),
        (30, chunk({"content": " dd", "reasoning_content": " bbcc"}, usage(4))),  # 3 tokens, 5 of 8 chars reasoning
        (40, chunk({"content": " e", "reasoning_content": ""}, usage(5), finish="length")),
    ])
    assert list(record.chunk_tokens) == [1, 3, 1] and record.reasoning_tokens == 1 + 2
    assert record.first_answer_ns == 30


LLAMACPP_ROLE = (b'{"choices":[{"finish_reason":null,"index":0,"delta":{"role":"assistant","content":null}}],'
                 b'"object":"chat.completion.chunk"}')


def llamacpp_delta(content: str, predicted_n: int | None, **draft) -> bytes:
    """llama-server's chat delta (server-task.cpp to_json_oaicompat_chat): with timings_per_token, the
    last delta of each result carries the slot's timings (predicted_n: tokens so far)."""
    obj: dict = {"choices": [{"finish_reason": None, "index": 0, "delta": {"content": content}}],
                 "object": "chat.completion.chunk"}
    if predicted_n is not None:
        obj["timings"] = {"prompt_n": 37, "predicted_n": predicted_n, **draft}
    return orjson.dumps(obj)


def test_llamacpp_chat_counts_by_timings_and_groups_steps():
    """Captured from llama-server 0.3.36 (b1-0c1e570) with timings_per_token: a role chunk without
    timings, one delta per token, an empty finish delta, then usage and the final timings."""
    ms = 1_000_000
    final = orjson.dumps({"choices": [], "object": "chat.completion.chunk",
                          "usage": {"completion_tokens": 5, "prompt_tokens": 37, "total_tokens": 42},
                          "timings": {"prompt_n": 37, "predicted_n": 5, "draft_n": 6, "draft_n_accepted": 2}})
    record = record_of("llamacpp", [
        (0, LLAMACPP_ROLE),
        (1 * ms, llamacpp_delta("spacing", 1)),
        (20 * ms, llamacpp_delta("仲", 2, draft_n=3, draft_n_accepted=1)),
        (20 * ms + 10_000, llamacpp_delta("меть", 3, draft_n=3, draft_n_accepted=1)),
        (40 * ms, llamacpp_delta("UI", None)),  # one of two deltas of one result: counts one until the next count
        (40 * ms + 10_000, llamacpp_delta("failed", 5, draft_n=6, draft_n_accepted=2)),
        (40 * ms + 20_000, b'{"choices":[{"finish_reason":"length","index":0,"delta":{}}]}'),
        (40 * ms + 30_000, final),
    ])
    assert record.output_tokens == sum(record.chunk_tokens) == 5 and record.server_prompt_tokens == 37
    assert (record.server_draft_tokens, record.server_accepted_tokens) == (6, 2)
    # the prefill's token, then 5 - 1 - 2 accepted = 2 decode steps, placed at the two largest gaps
    assert list(record.chunk_tokens) == [1, 2, 2] and list(record.chunk_ns) == [1 * ms, 20 * ms, 40 * ms]


def test_estimated_counts_tokenize_the_reply_once():
    """The plain OpenAI adapter on chat: no counts, so each chunk keeps its text; at the end the
    reply is tokenized once and each token counted where its text ends."""
    tokenizer = load_tokenizer(None)
    pieces = [(" Let", True), (" me think", True), ("", False), (" The answ", False), ("er is 42.", False)]
    recorder = EstimatedChatRecorder(RequestRecord(1, "c", 0, 5, 64, 0), get_adapter("openai"),
                                     tokenizer.tokens_ending_in, keep_text=True)
    recorder.on_event(5, orjson.dumps(chunk({"role": "assistant", "content": ""})))
    for t, (text, reasoning) in enumerate(pieces, start=10):
        recorder.on_event(t, orjson.dumps(chunk({"reasoning_content": text} if reasoning else {"content": text})))
    recorder.on_event(20, orjson.dumps({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 11}}))
    record = recorder.finish(None)
    whole = "".join(text for text, _ in pieces)
    assert sum(record.chunk_tokens) == len(tokenizer.encode(whole))  # every token counted once
    assert record.estimated_counts and record.output_tokens == 11  # the server's total is kept
    assert record.reasoning_tokens == len(tokenizer.encode(" Let me think"))
    assert recorder.text == " The answer is 42." and record.first_answer_ns == 13
    assert all(n > 0 for n in record.chunk_tokens) and 12 not in record.chunk_ns  # the empty delta is no step
