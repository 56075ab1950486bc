from loadgen.transport import ReadLag


def test_quantiles_are_bin_upper_bounds():
    lag = ReadLag()
    for ns in [5_000] * 98 + [2_000_000, 3_000_000]:
        lag.add(ns)
    s = lag.summary()
    assert s["reads"] == 100 and s["p50_s"] == 10e-6 and s["max_s"] == 3e-3
    assert 2e-3 <= lag.quantile(0.99) <= 2.01e-3


def test_overflow_and_empty():
    lag = ReadLag()
    assert lag.summary() == {"reads": 0, "p50_s": None, "p99_s": None, "max_s": None}
    lag.add(5_000_000_000)
    assert lag.quantile(0.5) == 5.0
