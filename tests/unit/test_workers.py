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


def test_split_levels_gives_each_worker_its_share_of_every_level():
    from loadgen.workers import split_levels
    plans = split_levels(3, (1, 4, 16, 2), list(range(9)), list(range(12)))
    assert [p.levels for p in plans] == [(1, 2, 6, 1), (0, 1, 5, 1), (0, 1, 5, 0)]
    assert [sum(level) for level in zip(*(p.levels for p in plans), strict=True)] == [1, 4, 16, 2]
    # the warm-up runs at the first level's concurrency: all of it on the one worker with a slot there
    assert [(p.concurrency, list(p.warmup)) for p in plans] == [(1, list(range(9))), (0, []), (0, [])]
    assert [list(p.measured) for p in plans] == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8, 11]]
    assert all(p.cycle and p.workers == 3 for p in plans)
    assert len(split_levels(8, (1, 2), [], [0, 1])) == 2  # never more workers than the highest level
