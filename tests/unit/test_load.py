import time

from loadgen.scheduler import LoadTracker


def test_time_weighted_mean_between_first_and_last_send(monkeypatch):
    clock = iter([0, 0, 1_000, 2_000, 3_000, 4_000, 9_000])
    monkeypatch.setattr(time, "monotonic_ns", lambda: next(clock))
    load = LoadTracker()
    load.started()   # t=0: 1
    load.started()   # t=0: 2
    load.finished()  # t=1000: 1
    load.started()   # t=2000: 2   (last send at 2000 unless another comes)
    load.finished()  # t=3000: 1
    load.started()   # t=4000: 2   last send
    load.finished()  # t=9000: drains: not counted
    summary = load.summary(target=2)
    # area to the last send: 2*1000 + 1*1000 + 2*1000 + 1*1000 = 6000 over 4000 ns
    assert summary["mean_in_flight"] == 1.5 and summary["achieved_ratio"] == 0.75 and not summary["held"]
