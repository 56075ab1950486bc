import math

import pytest

from loadgen.analysis import (
    conditional_acceptance,
    cross_check,
    distribution,
    mean_from_histogram,
    request_acceptance_length,
    step_histogram,
)
from loadgen.engines import ServerAcceptance, SpecCounters
from loadgen.engines.server_metrics import window_acceptance


def test_histogram_excludes_the_prefill_chunk():
    assert step_histogram([[1, 3, 2], [1, 3], [5]]) == {2: 1, 3: 2}


def test_mean_from_histogram():
    assert mean_from_histogram({3: 2, 2: 1}) == pytest.approx(8 / 3)
    assert mean_from_histogram({}) is None


def test_conditional_acceptance_is_ratio_of_at_least_counts():
    # steps: 1,1,2,3 -> >=1: 4, >=2: 2, >=3: 1
    assert conditional_acceptance({1: 2, 2: 1, 3: 1}) == {1: 1.0, 2: 0.5, 3: 0.5}
    assert conditional_acceptance({}) == {}


def test_conditional_acceptance_skips_gaps_without_dividing_by_zero():
    assert conditional_acceptance({4: 3}) == {1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0}


def test_request_acceptance_length():
    assert request_acceptance_length([1, 3, 4, 2]) == 3.0
    assert request_acceptance_length([1]) is None


def test_server_acceptance_counter_arithmetic():
    before = SpecCounters(drafts=5, draft_tokens=15, accepted_tokens=5, accepted_per_position=(3, 2))
    after = SpecCounters(drafts=15, draft_tokens=45, accepted_tokens=20, accepted_per_position=(11, 7, 2))
    got = window_acceptance(before, after, "test")
    assert got.acceptance_length == 2.5 and got.drafts == 10
    assert got.acceptance_rate == 0.5
    assert got.per_position == [0.8, 0.5, 0.2]
    assert got.raw["before"]["accepted_per_position"] == [3, 2]
    assert window_acceptance(before, before, "test") is None  # no drafts in the window


def test_cross_check_flags_disagreement_beyond_two_percent_with_a_cause():
    why = ("server", "because")
    agree = cross_check(2.50, ServerAcceptance("s", 2.46), why, None)
    assert not agree["flagged"] and agree["relative_difference"] > 0 and agree["authoritative"] == "server"
    merged = cross_check(3.2, ServerAcceptance("s", 2.5), why, 0.02)
    assert merged["flagged"] and "stream interval" in merged["likely_causes"][0]
    assert any("fell behind" in c for c in merged["likely_causes"])
    low = cross_check(2.0, ServerAcceptance("s", 2.5, exact=False), why, None)
    assert low["flagged"] and any("other traffic" in c for c in low["likely_causes"])
    assert any("windowed" in c for c in low["likely_causes"])
    assert cross_check(None, None, why, None)["flagged"] is False


def test_spec_counter_difference_pads_missing_positions():
    later = SpecCounters(10, 30, 15, (8, 5, 2))
    earlier = SpecCounters(4, 12, 6, (3, 3))
    assert later.minus(earlier) == SpecCounters(6, 18, 9, (5, 2, 2))


def test_distribution():
    d = distribution([1, 2, 3, 4])
    assert d["count"] == 4 and d["mean"] == 2.5 and d["p50"] == 2.5 and d["p25"] == 1.75
    assert d["min"] == 1 and d["max"] == 4 and math.isclose(d["std"], math.sqrt(1.25))
    empty = distribution([])
    assert empty["count"] == 0 and empty["p99"] is None
