from array import array

import pytest

from loadgen.analysis.timeseries import time_series
from loadgen.records import ErrorInfo, RequestRecord

S = 1_000_000_000
T0 = 10**12


def _record(sent_s: float, chunk_s: list[float], tokens: list[int], end_s: float, error=None) -> RequestRecord:
    r = RequestRecord(0, "c", 0, 1, 1, scheduled_ns=T0 + int(sent_s * S), sent_ns=T0 + int(sent_s * S),
                      end_ns=T0 + int(end_s * S), error=error)
    r.chunk_ns = array("q", [T0 + int(t * S) for t in chunk_s])
    r.chunk_tokens = array("i", tokens)
    if chunk_s:
        r.first_ns, r.last_ns = r.chunk_ns[0], r.chunk_ns[-1]
    return r


def test_per_second_throughput_in_flight_acceptance_and_outcomes():
    records = [_record(0.0, [0.1, 0.5, 1.2], [1, 3, 2], 1.5),
               _record(0.0, [0.2, 1.4, 1.6, 1.8], [1, 4, 4, 1], 2.0),
               _record(1.0, [], [], 1.5, ErrorInfo("timeout", "t"))]
    rows = time_series(records)
    assert [r["t_s"] for r in rows] == [0.0, 1.0]
    assert [r["output_tps"] for r in rows] == [5.0, 11.0]  # 1+3+1 in the first second, 2+4+4+1 in the second
    assert rows[0]["acceptance_length"] == 3.0  # only the step [3] (first chunks excluded)
    assert rows[1]["acceptance_length"] == pytest.approx(11 / 4)  # steps 2, 4, 4, 1
    assert rows[0]["in_flight"] == pytest.approx(2.0) and rows[1]["in_flight"] == pytest.approx(2.0)
    assert [(r["completed"], r["failed"]) for r in rows] == [(0, 0), (2, 1)]


def test_no_records_no_rows():
    assert time_series([]) == []
