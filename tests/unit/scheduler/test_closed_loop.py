"""The closed loop in simulated time: exact concurrency, limits and deadlines, no tolerance."""

import random

from loadgen.scheduler import closed_loop

from ...clock import FakeClock

MS = 1_000_000


def _spans(clock: FakeClock, durations_ns, spans: list):
    """A send that takes the next of `durations_ns` in simulated time and notes (scheduled, start, end)."""
    durations = iter(durations_ns)

    async def send(prompt, scheduled_ns):
        start = clock.now_ns()
        await clock.sleep_until(start + next(durations))
        spans.append((scheduled_ns, start, clock.now_ns()))

    return send


def _in_flight(spans, t_ns: int) -> int:
    return sum(start <= t_ns < end for _, start, end in spans)


def test_closed_loop_keeps_exactly_its_concurrency_in_flight():
    rng = random.Random(4)
    clock, spans = FakeClock(), []
    issued = clock.run(closed_loop(iter(range(200)), 8, _spans(clock, [rng.randrange(1, 80) * MS for _ in range(200)],
                                                                  spans), limit=200, clock=clock))
    assert issued == 200 == len(spans)
    assert all(scheduled == start for scheduled, start, _ in spans)  # scheduled the moment a slot frees up
    last_start = max(start for _, start, _ in spans)
    # a slot's next request starts the instant its last one ends: 8 at every moment until the last is sent
    assert {_in_flight(spans, t) for _, start, end in spans for t in (start, end) if t <= last_start} == {8}
    assert max(_in_flight(spans, start) for _, start, _ in spans) == 8  # and never more (it only rises at a start)


def test_the_limit_counts_requests_issued():
    clock, spans = FakeClock(), []
    assert clock.run(closed_loop(iter(range(100)), 3, _spans(clock, [10 * MS] * 100, spans), limit=10,
                                 clock=clock)) == 10
    assert sorted(start for _, start, _ in spans) == [0, 0, 0, 10 * MS, 10 * MS, 10 * MS, 20 * MS, 20 * MS, 20 * MS,
                                                      30 * MS]


def test_no_request_is_issued_at_or_after_the_deadline_and_those_in_flight_finish():
    clock, spans = FakeClock(start_ns=10**9), []
    issued = clock.run(closed_loop(iter(range(100)), 2, _spans(clock, [30 * MS] * 100, spans),
                                   deadline_ns=10**9 + 90 * MS, clock=clock))
    # each slot sends at 0, 30 and 60 ms; at 90 ms the deadline has come (now >= deadline), so no more
    assert issued == 6 and sorted(start - 10**9 for _, start, _ in spans) == [0, 0, 30 * MS, 30 * MS, 60 * MS, 60 * MS]
    assert clock.now_ns() == 10**9 + 90 * MS


def test_a_stop_ends_each_slot_after_its_request_in_flight():
    clock, spans = FakeClock(), []
    send = _spans(clock, [25 * MS] * 100, spans)
    issued = clock.run(closed_loop(iter(range(100)), 4, send, stopping=lambda: clock.now_ns() >= 60 * MS, clock=clock))
    assert issued == 12 and clock.now_ns() == 75 * MS  # sends at 0, 25 and 50 ms per slot; the 75 ms check stops
