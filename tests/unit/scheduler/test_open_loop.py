import asyncio

import numpy as np
import pytest

from loadgen.scheduler import arrival_offsets, open_loop

from ...clock import FakeClock

MS = 1_000_000


def _gaps(offsets) -> np.ndarray:
    return np.diff(offsets) / 1e9


def test_poisson_gamma_and_constant_gaps_have_the_asked_mean_and_spread():
    poisson = _gaps(arrival_offsets(10, count=40_000, seed=1))
    assert poisson.mean() == pytest.approx(0.1, rel=0.02)
    assert poisson.std() / poisson.mean() == pytest.approx(1, rel=0.03)
    bursty = _gaps(arrival_offsets(10, count=40_000, arrival="gamma", burstiness=0.25, seed=1))
    assert bursty.mean() == pytest.approx(0.1, rel=0.03)
    assert bursty.std() / bursty.mean() == pytest.approx(2, rel=0.05)
    assert np.allclose(_gaps(arrival_offsets(4, count=10, arrival="constant")), 0.25)
    assert arrival_offsets(4, count=10, seed=3)[0] == 0  # the first request goes at once


def test_duration_and_ramp_up():
    offsets = arrival_offsets(10, duration_s=100, arrival="constant", ramp_up_s=10)
    # 10 req/s after a linear 10 s ramp: 50 arrivals in the ramp, 900 after
    assert len(offsets) == 950 and offsets[-1] < 100e9
    assert np.all(_gaps(offsets)[:40] > 0.1) and np.allclose(_gaps(offsets)[-100:], 0.1)
    with pytest.raises(ValueError, match="unknown arrival"):
        arrival_offsets(1, count=2, arrival="uniform")


def _timed_send(clock: FakeClock, reply_ns: int, log: list):
    """A send that notes (prompt, scheduled, when called) and takes `reply_ns` of simulated time."""

    async def send(prompt, scheduled_ns):
        log.append((prompt, scheduled_ns, clock.now_ns()))
        await clock.sleep_until(clock.now_ns() + reply_ns)

    return send


def test_open_loop_sends_each_request_exactly_at_its_scheduled_time_without_waiting_for_replies():
    clock, log, start = FakeClock(start_ns=7 * 10**9), [], 7 * 10**9 + 3
    offsets = arrival_offsets(40, count=120, seed=2)
    # each reply takes 200 ms, 8 gaps on average: the next arrival must not wait for it
    count = clock.run(open_loop(iter(range(120)), offsets, start, _timed_send(clock, 200 * MS, log), clock=clock))
    assert count == 120 and [prompt for prompt, _, _ in log] == list(range(120))
    assert [scheduled for _, scheduled, _ in log] == [start + int(o) for o in offsets]
    assert [sent for _, _, sent in log] == [start + int(o) for o in offsets]  # not a nanosecond early or late
    assert clock.now_ns() == start + int(offsets[-1]) + 200 * MS  # it returns once the last reply is in


def test_ramp_up_and_duration_bound_schedules_are_followed_exactly():
    clock, log = FakeClock(), []
    offsets = arrival_offsets(10, duration_s=30, arrival="constant", ramp_up_s=10)
    count = clock.run(open_loop(iter(range(len(offsets))), offsets, 0, _timed_send(clock, 50 * MS, log), clock=clock))
    sent = np.array([t for _, _, t in log])
    assert count == len(offsets) and np.array_equal(sent, offsets)
    # 50 arrivals in the 10 s ramp (half the rate on average), none at or past the 30 s
    assert np.count_nonzero(sent < 10 * 10**9) == 50 and sent[-1] < 30 * 10**9
    assert clock.now_ns() == sent[-1] + 50 * MS


def test_a_stop_sends_nothing_more_and_lets_the_requests_in_flight_finish():
    clock, log, finished = FakeClock(), [], []
    stopped = False

    async def send(prompt, scheduled_ns):
        log.append(clock.now_ns())
        await clock.sleep_until(clock.now_ns() + 120 * MS)
        finished.append(prompt)

    async def main():
        nonlocal stopped
        loop = asyncio.ensure_future(open_loop(iter(range(10)), [i * 100 * MS for i in range(10)], 0, send,
                                               stopping=lambda: stopped, clock=clock))
        await clock.sleep_until(350 * MS)  # while the loop waits for the request due at 400 ms
        stopped = True
        return await loop

    assert clock.run(main()) == 4
    assert log == [0, 100 * MS, 200 * MS, 300 * MS] and finished == [0, 1, 2, 3]
    assert clock.now_ns() == 420 * MS  # the last reply, not the next arrival, ends the loop


def test_a_cancelled_open_loop_cancels_the_requests_in_flight():
    clock, cancelled = FakeClock(), []

    async def send(prompt, scheduled_ns):
        try:
            await clock.sleep_until(clock.now_ns() + 1_000 * MS)
        except asyncio.CancelledError:
            cancelled.append((prompt, clock.now_ns()))
            raise

    async def main():
        loop = asyncio.ensure_future(open_loop(iter(range(10)), [i * 100 * MS for i in range(10)], 0, send,
                                               clock=clock))
        await clock.sleep_until(250 * MS)
        loop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loop

    clock.run(main())
    assert sorted(cancelled) == [(0, 250 * MS), (1, 250 * MS), (2, 250 * MS)]  # the three sent, at once
