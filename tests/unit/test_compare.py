from loadgen.studies.compare import _breakeven


def _points(speedups: dict) -> dict:
    return {v: {"output_tps_speedup": s} for v, s in speedups.items()}


def test_breakeven_is_where_the_output_speedup_first_falls_to_one():
    assert _breakeven(_points({1: 2.1, 8: 1.4, 32: 1.02, 64: 0.9, 128: 0.7})) == {"last_paying": 32,
                                                                                 "first_losing": 64}
    assert _breakeven(_points({1: 2.0, 4: 1.5})) == {"last_paying": 4, "first_losing": None}
    assert _breakeven(_points({1: 0.95, 4: 0.8})) == {"last_paying": None, "first_losing": 1}
