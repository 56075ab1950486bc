import asyncio

import numpy as np
import pytest

from loadgen.scheduler import arrival_offsets, open_loop


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


def test_open_loop_sends_on_schedule_without_waiting_for_replies():
    sent = []

    async def send(prompt, scheduled_ns):
        sent.append((prompt, scheduled_ns))
        await asyncio.sleep(0.2)  # slow replies must not delay the next arrival

    async def main():
        import time
        start = time.monotonic_ns()
        count = await open_loop(iter(range(5)), [0, 10_000_000, 20_000_000, 30_000_000, 40_000_000], start, send)
        return start, count, time.monotonic_ns() - start

    start, count, took = asyncio.run(main())
    assert count == 5 and [p for p, _ in sent] == list(range(5))
    assert [t - start for _, t in sent] == [0, 10_000_000, 20_000_000, 30_000_000, 40_000_000]
    assert took < 0.4e9  # 40 ms of arrivals + one 200 ms reply, not five in a row
