"""Grouping one-chunk-per-token streams into engine steps."""

from loadgen.records.steps import step_starts

MS = 1_000_000


def sizes(starts: list[int], n: int) -> list[int]:
    return [b - a for a, b in zip(starts, [*starts[1:], n])]


def test_engine_count_fixes_the_steps_and_the_largest_gaps_place_them():
    # prefill; then steps of 3, 1, 2 tokens whose bursts are spread by a busy client (gaps > 2 ms)
    times = [0, 30 * MS, 33 * MS, 36 * MS, 60 * MS, 90 * MS, 93 * MS]
    starts = step_starts(times, accepted=3, gap_ns=2 * MS)
    assert starts == [0, 1, 4, 5] and sizes(starts, 7) == [1, 3, 1, 2]
    # the gap method on the same stream sees every token as a step
    assert sizes(step_starts(times, accepted=None, gap_ns=2 * MS), 7) == [1] * 7


def test_steps_read_together_still_count_as_the_engine_says():
    times = [0, 20 * MS, 20 * MS, 20 * MS, 20 * MS]  # two steps of 2 arrived in one read
    assert len(step_starts(times, accepted=2, gap_ns=2 * MS)) == 3
    assert len(step_starts(times, accepted=None, gap_ns=2 * MS)) == 2  # the estimate merges them


def test_nothing_drafted_is_one_token_per_step():
    times = [0, 1 * MS, 2 * MS, 3 * MS]
    assert step_starts(times, accepted=0, gap_ns=2 * MS) == [0, 1, 2, 3]
    assert step_starts(times, accepted=None, gap_ns=2 * MS) == [0]  # too fast for the estimate


def test_a_count_the_stream_cannot_hold_falls_back_to_gaps():
    times = [0, 10 * MS, 10 * MS, 30 * MS]
    assert step_starts(times, accepted=3, gap_ns=2 * MS) == [0, 1, 3]  # 3 accepted of 4 tokens: impossible
    assert step_starts([5], accepted=0, gap_ns=2 * MS) == [0] and step_starts([], accepted=None, gap_ns=1) == []
