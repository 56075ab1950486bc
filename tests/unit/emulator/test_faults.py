import random

import pytest

from loadgen.emulator.faults import NO_FAULT, Faults, draw, parse_fault_flag


def test_each_request_draws_at_most_one_fault_at_the_given_rates():
    faults = Faults(status_rates=((429, 0.1), (503, 0.05)), stream_error=0.05, reset=0.05, stall=0.05, malformed=0.05)
    rng = random.Random(1)
    plans = [draw(faults, rng, max_tokens=40) for _ in range(40_000)]
    share = lambda pred: sum(map(pred, plans)) / len(plans)  # noqa: E731
    assert share(lambda p: p.status == 429) == pytest.approx(0.10, abs=0.01)
    assert share(lambda p: p.status == 503) == pytest.approx(0.05, abs=0.01)
    for kind in ("stream_error", "reset", "stall", "malformed"):
        assert share(lambda p, kind=kind: p.stream == kind) == pytest.approx(0.05, abs=0.01)
    assert share(lambda p: p is NO_FAULT) == pytest.approx(0.65, abs=0.015)
    assert all(1 <= p.at_token <= 20 for p in plans if p.stream)


def test_bad_fault_settings_are_refused():
    with pytest.raises(ValueError, match="add up to at most 1"):
        Faults(status_rates=((500, 0.6),), reset=0.5)
    with pytest.raises(ValueError, match="4xx or 5xx"):
        Faults(status_rates=((200, 0.1),))
    with pytest.raises(ValueError, match="STATUS=RATE"):
        parse_fault_flag("503")
    assert parse_fault_flag("503=0.25") == (503, 0.25)
