"""Figures per load level (--concurrency-levels): which requests and chunks count where, and the
collapse named at the first level whose client AL moves beyond the threshold."""

import pytest

from loadgen.analysis.levels import COLLAPSE_AL_CHANGE, find_collapse, level_figures
from loadgen.records import ErrorInfo
from tests.records import streamed_record

S = 1_000_000_000
T0 = 10**12


def _record(rid: int, scheduled_s: float, tokens: list[int], step_s: float = 0.1, *, failed: bool = False):
    return streamed_record(rid, tokens, scheduled_ns=T0 + int(scheduled_s * S), sent_after_ns=0,
                           step_ns=int(step_s * S),
                           error=ErrorInfo("http_status", "HTTP 500", status=500) if failed else None)


def test_requests_count_in_the_level_of_their_scheduled_time_and_chunks_in_their_window():
    records = [
        _record(0, 0.0, [1, 3, 3, 3]),        # level 0: chunks at 0.05 .. 0.35 s
        _record(1, 0.9, [1, 3, 3, 3, 3, 3]),  # scheduled in level 0, chunks at 0.95 .. 1.45 s: straddles
        _record(2, 1.2, [1, 1, 1, 1]),        # level 1
        _record(3, 1.5, [], failed=True),     # level 1, failed
        _record(4, 1.8, [1, 1, 1]),           # level 1; its chunks after 2.0 s are in no level (the drain)
    ]
    rows = level_figures(records, (2, 4), 1.0)
    assert [(r["concurrency"], r["start_s"], r["end_s"], r["requests"], r["completed"]) for r in rows] == [
        (2, 0.0, 1.0, 2, 2), (4, 1.0, 2.0, 3, 2)]
    assert sum(r["requests"] for r in rows) == len(records)
    # level 0's window: request 0's 10 tokens and request 1's chunks at 0.95 (1 token); the rest of
    # request 1 (3 chunks of 3 by 1.25 s, 1.35, 1.45 -> 5 chunks of 3) falls in level 1
    assert [r["output_tokens"] for r in rows] == [11, 15 + 4 + 2]
    assert rows[0]["acceptance_length"] == pytest.approx(3.0) and rows[0]["steps"] == 3
    assert rows[1]["steps"] == 5 + 3 + 1 and rows[1]["acceptance_length"] == pytest.approx((15 + 3 + 1) / 9)
    assert rows[0]["output_tps"] == pytest.approx(11.0)
    # TTFT, TPOT by membership: level 0 holds requests 0 and 1 (TTFT 50 ms each)
    assert rows[0]["ttft_p50_s"] == pytest.approx(0.05)
    assert rows[0]["tpot_p50_s"] == pytest.approx(0.5 * (0.3 / 9 + 0.5 / 15))


def test_the_collapse_is_the_first_level_beyond_the_threshold():
    def row(c, al, tpot=0.01):
        return {"concurrency": c, "acceptance_length": al, "tpot_p50_s": tpot}

    assert find_collapse([row(1, 2.47), row(4, 2.40), row(8, 1.0), row(16, 1.0)]) == {
        "concurrency": 8, "previous_concurrency": 4, "metric": "acceptance_length", "previous": 2.40, "value": 1.0,
        "change": pytest.approx(1.0 / 2.40 - 1), "threshold": COLLAPSE_AL_CHANGE}
    assert find_collapse([row(1, 2.0), row(4, 2.0 * (1 + COLLAPSE_AL_CHANGE) - 1e-9)]) is None  # just within
    # the TPOT decides only where a level has no AL; a TPOT jump beside a steady AL is no collapse
    assert find_collapse([row(1, 2.0, 0.01), row(4, 2.0, 0.05)]) is None
    found = find_collapse([row(1, None, 0.01), row(4, None, 0.012), row(8, None, 0.02)])
    assert found is not None and (found["concurrency"], found["metric"]) == (8, "tpot_p50_s")
    assert find_collapse([row(1, 2.0)]) is None and find_collapse([]) is None
