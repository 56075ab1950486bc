"""Every message between the parent and its workers arrives as it was sent, field by field."""

from array import array

import pytest

from loadgen.records import ErrorInfo, RequestRecord
from loadgen.transport import ReadLag
from loadgen.worker_messages import (
    Begin,
    Cancel,
    ClockReading,
    ClockRequest,
    Failed,
    Finished,
    Hello,
    Phase,
    PhaseDone,
    Ready,
    Stop,
    decode,
    encode,
)


def _record() -> RequestRecord:
    return RequestRecord(7, "coding", 1, 120, 64, 1_000, False, sub_category="py", sent_ns=1_100, first_ns=2_000,
                         last_ns=3_000, end_ns=3_100, chunk_ns=array("q", [2_000, 2_500, 3_000]),
                         chunk_tokens=array("i", [1, 3, 2]), output_tokens=6, error=ErrorInfo("timeout", "idle", None,
                                                                                                "idle"))


@pytest.mark.parametrize("message", [Phase(True, None, None), Phase(False, 5_000_000_000, 4_000_000_000), Stop(),
                                     Cancel(), ClockRequest(), Ready(), ClockReading(123456789), Failed("boom"),
                                     Begin(7, "coding", "py", 1, 120, 64, 1_000, False)],
                         ids=lambda m: type(m).__name__)
def test_plain_messages_round_trip(message):
    line = encode(message)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode(line) == message


def test_a_finished_request_carries_its_whole_record():
    record = _record()
    got = decode(encode(Finished(record, True, 3)))
    assert isinstance(got, Finished) and got.conversation_done and got.in_flight == 3
    assert got.record.to_json() == record.to_json()


def test_begin_is_taken_from_the_record_it_announces():
    record = _record()
    begin = Begin.of(record)
    assert (begin.request_id, begin.category, begin.sub_category, begin.turn, begin.prompt_tokens,
            begin.max_tokens, begin.scheduled_ns, begin.warmup) == (7, "coding", "py", 1, 120, 64, 1_000, False)


def test_phase_done_carries_the_read_lag_histogram():
    lag = ReadLag()
    for ns in (1_000, 40_000, 3_000_000):
        lag.add(ns)
    got = decode(encode(PhaseDone(lag))).read_lag
    assert got.to_json() == lag.to_json() and got.total == 3


def test_hello_of_another_version_still_names_its_version():
    hello = Hello("t0k", 2, "9.9", "abcd1234", "Ray actor w2")
    assert Hello.decode(hello.encode()) == hello
    assert Hello.decode(b'{"token": "t0k", "version": "0.1"}').version == "0.1"
    assert Hello.decode(b"").token is None
