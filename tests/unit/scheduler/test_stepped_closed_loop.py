"""The stepped closed loop (--concurrency-levels) in simulated time: exact slot counts per level,
up and down, boundaries as scheduled times, nothing issued after the last level; no tolerance."""

import random

from loadgen.scheduler import stepped_closed_loop

from ...clock import FakeClock

MS = 1_000_000


def _spans(clock: FakeClock, duration_of, spans: list):
    """A send that takes duration_of() in simulated time and notes (scheduled, start, end)."""

    async def send(prompt, scheduled_ns):
        start = clock.now_ns()
        await clock.sleep_until(start + duration_of())
        spans.append((scheduled_ns, start, clock.now_ns()))

    return send


def _in_flight(spans, t_ns: int) -> int:
    return sum(start <= t_ns < end for _, start, end in spans)


def test_each_level_runs_its_slots_up_and_down():
    clock, spans = FakeClock(), []
    issued = clock.run(stepped_closed_loop(iter(range(1000)), (1, 4, 2), 100 * MS, 0,
                                           _spans(clock, lambda: 30 * MS, spans), clock=clock))
    scheduled = sorted(s // MS for s, _, _ in spans)
    # level 0 (1 slot): 0, 30, 60, 90. Level 1 (4): slot 0 goes on at 120, 150, 180; slots 1-3
    # start at the boundary (100) and go on at 130, 160, 190. Level 2 (2): slots 0 and 1 go on
    # (210, 240, 270 and 220, 250, 280); slots 2 and 3 finish at 220 and send nothing more.
    assert scheduled == sorted([0, 30, 60, 90, 120, 150, 180, *[100, 130, 160, 190] * 3, 210, 240, 270, 220, 250,
                                280])
    assert issued == len(spans) == 25
    levels = [sum(j * 100 <= s < (j + 1) * 100 for s in scheduled) for j in range(3)]
    assert levels == [4, 15, 6]
    assert all(_in_flight(spans, t * MS) == 4 for t in range(100, 200))  # up: 4 from the boundary on
    assert [_in_flight(spans, t * MS) for t in (200, 219, 220, 260, 299)] == [4, 4, 2, 2, 2]  # down: 2 left
    assert clock.now_ns() == 310 * MS  # the last request, sent at 280 ms, ends; none at or after 300 ms


def test_a_stepped_run_holds_every_levels_concurrency_with_any_request_lengths():
    rng = random.Random(7)
    clock, spans = FakeClock(), []
    levels, level = (3, 8, 2, 5, 5, 1), 200 * MS
    longest = 80 * MS
    clock.run(stepped_closed_loop(iter(range(10**6)), levels, level, 0,
                                  _spans(clock, lambda: rng.randrange(1, 81) * MS, spans), clock=clock))
    assert all(s == start for s, start, _ in spans)  # scheduled the moment a slot frees up or its level begins
    assert max(s for s, _, _ in spans) < len(levels) * level
    events = sorted({t for _, start, end in spans for t in (start, end)})
    for j, concurrency in enumerate(levels):
        begin = j * level + (longest if j and concurrency < levels[j - 1] else 0)  # down: the extra slots drain
        held = {_in_flight(spans, t) for t in events if begin <= t < (j + 1) * level}
        assert held == {concurrency}, (j, held)
        # requests scheduled in a level never outnumber its slots at any instant
        own = [(s, a, e) for s, a, e in spans if j * level <= s < (j + 1) * level]
        assert max(_in_flight(own, t) for t in events) == concurrency


def test_slots_wait_for_a_start_in_the_future_and_count_from_it():
    """Workers get a common start a little ahead: the first sends are scheduled exactly then."""
    clock, spans = FakeClock(start_ns=10 * MS), []
    clock.run(stepped_closed_loop(iter(range(100)), (2, 3), 40 * MS, 50 * MS, _spans(clock, lambda: 25 * MS, spans),
                                  clock=clock))
    assert sorted(s // MS for s, _, _ in spans) == [50, 50, 75, 75, 90, 100, 100, 115, 125, 125]


def test_a_stop_ends_each_slot_after_its_request_in_flight():
    clock, spans = FakeClock(), []
    issued = clock.run(stepped_closed_loop(iter(range(100)), (2, 6), 100 * MS, 0,
                                           _spans(clock, lambda: 30 * MS, spans),
                                           stopping=lambda: clock.now_ns() >= 70 * MS, clock=clock))
    # slots 0 and 1 send at 0, 30 and 60 ms; at 90 the stop holds; slots 2-5 wake at 100 and stop too
    assert issued == 6 and clock.now_ns() == 100 * MS
