from loadgen.workers import auto_workers, split


def test_split_shares_concurrency_and_prompts_in_proportion():
    plans = split(3, 10, warmup=list(range(6)), measured=list(range(100)), cycle=False)
    assert [p.concurrency for p in plans] == [4, 3, 3]
    assert [len(p.measured) for p in plans] == [40, 30, 30] and [len(p.warmup) for p in plans] == [2, 2, 2]
    assert sorted(i for p in plans for i in p.measured) == list(range(100))  # each prompt once, none lost
    assert [p.index for p in plans] == [0, 1, 2] and all(p.workers == 3 for p in plans)


def test_split_never_makes_idle_workers_and_cycles_own_slices():
    assert len(split(8, 3, [], list(range(10)), cycle=False)) == 3
    plans = split(2, 4, [], list(range(5)), cycle=True)
    assert [list(p.measured) for p in plans] == [[0, 2, 4], [1, 3]] and all(p.cycle for p in plans)


def test_auto_workers_grows_with_streams_up_to_the_cores(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert [auto_workers(c) for c in (1, 512, 513, 2048, 100_000)] == [1, 1, 2, 4, 4]
