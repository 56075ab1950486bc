from pathlib import Path

import orjson

from loadgen.engines import get_adapter
from loadgen.records import ErrorInfo, Journal, RequestRecord, StreamRecorder, read_journal


def _chunk(cum: int | None, finish=None, choices=True) -> bytes:
    obj = {"choices": [{"text": "x", "finish_reason": finish}] if choices else []}
    if cum is not None:
        obj["usage"] = {"completion_tokens": cum, "prompt_tokens": 4, "total_tokens": 4 + cum}
    return orjson.dumps(obj)


def _recorder(engine="vllm") -> StreamRecorder:
    return StreamRecorder(RequestRecord(1, "c", 0, 4, 10, scheduled_ns=100), get_adapter(engine))


def test_tokens_per_chunk_from_cumulative_usage():
    rec = _recorder()
    for t, cum in ((1000, 1), (2000, 3), (3000, 6), (4000, 7)):
        rec.on_event(t, _chunk(cum, "length" if cum == 7 else None))
    rec.on_event(4001, _chunk(7, choices=False))  # final usage chunk: not a step
    record = rec.finish(None)
    assert list(record.chunk_tokens) == [1, 2, 3, 1]
    assert list(record.chunk_ns) == [1000, 2000, 3000, 4000]
    assert record.first_ns == 1000 and record.last_ns == 4000
    assert record.output_tokens == 7 and record.finish_reason == "length" and record.ok


def test_one_per_chunk_assumption_for_plain_openai():
    rec = _recorder("openai")
    rec.on_event(1, _chunk(None))
    rec.on_event(2, _chunk(None))
    rec.on_event(3, _chunk(2, choices=False))
    record = rec.finish(None)
    assert list(record.chunk_tokens) == [1, 1] and record.output_tokens == 2


def test_stream_error_and_malformed_chunks_are_recorded():
    rec = _recorder()
    rec.on_event(1, _chunk(1))
    rec.on_event(2, b"{oops")
    record = rec.finish(None)
    assert record.error.kind == "malformed" and list(record.chunk_tokens) == [1]
    rec = _recorder()
    rec.on_event(1, _chunk(1))
    rec.on_event(2, b"{oops")
    rec.on_event(3, b'{"error": {"message": "engine died"}}')
    record = rec.finish(None)
    assert record.error == ErrorInfo("stream_error", "engine died") and record.outcome == "error"


def test_transport_error_wins():
    rec = _recorder()
    rec.on_event(1, _chunk(1))
    record = rec.finish(ErrorInfo("disconnect", "reset"))
    assert record.error.kind == "disconnect" and record.output_tokens == 1


def test_journal_round_trip_and_torn_last_line(tmp_path: Path):
    path = tmp_path / "requests.jsonl"
    journal = Journal(path)
    rec = _recorder()
    rec.on_event(5, _chunk(2))
    first = rec.finish(None)
    journal.append(first)
    journal.close()
    with open(path, "ab") as f:
        f.write(b'{"request_id": 2, "categ')  # a run killed mid-write
    records = list(read_journal(path))
    assert len(records) == 1
    assert records[0].to_json() == first.to_json()


def test_failed_record_round_trips_with_its_error_and_times():
    rec = _recorder()
    rec.on_event(5, _chunk(1))
    record = rec.finish(ErrorInfo("http_status", "HTTP 500: boom", 500))
    record.sent_ns, record.end_ns = 3, 9
    record.receive_lag_ns.append(4)
    back = RequestRecord.from_json(orjson.loads(orjson.dumps(record.to_json())))
    assert back == record and back.error == ErrorInfo("http_status", "HTTP 500: boom", 500)


def test_llamacpp_chat_tokens_counted_only_by_the_closing_usage_land_in_a_chunk():
    """llama-server's chat stream: deltas counted by timings.predicted_n; a last token whose text never
    came sends no delta, and only the closing usage event (no choices) counts it. It arrived there,
    so it is that chunk's token: the chunks hold every output token. (A plain OpenAI server's usage
    above its one-per-chunk assumption is not a chunk: the test above.)"""
    record = RequestRecord(1, "c", 0, 4, 4, scheduled_ns=100)
    rec = StreamRecorder(record, get_adapter("llamacpp"), chat=True)

    def delta(content, predicted_n=None, finish=None) -> bytes:
        obj: dict = {"choices": [{"index": 0, "finish_reason": finish, "delta": content}],
                     "object": "chat.completion.chunk"}
        if predicted_n is not None:
            obj["timings"] = {"predicted_n": predicted_n}
        return orjson.dumps(obj)

    rec.on_event(1000, delta({"role": "assistant", "content": None}))
    rec.on_event(2000, delta({"content": "a"}, 1))
    rec.on_event(3000, delta({"content": "bc"}, 3))
    rec.on_event(4000, delta({}, finish="length"))
    rec.on_event(4001, orjson.dumps({"choices": [], "usage": {"completion_tokens": 4, "prompt_tokens": 4,
                                                              "total_tokens": 8},
                                     "timings": {"predicted_n": 4, "draft_n": 0, "draft_n_accepted": 0}}))
    record = rec.finish(None)
    # nothing drafted: one token per step (records.steps), the last one at the closing event
    assert list(record.chunk_tokens) == [1, 1, 1, 1] and list(record.chunk_ns) == [2000, 3000, 3000, 4001]
    assert record.output_tokens == 4 and record.finish_reason == "length"
