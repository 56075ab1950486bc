"""The draft-length cost model: closed forms, and the fit recovering a known model from its points."""

from __future__ import annotations

import math
import random

import pytest

from loadgen.analysis.step_model import (
    StepModel,
    acceptance_length,
    conditional_from_positions,
    fit,
    oracle_speedup,
    speedup,
    tpot_ms,
)

MODEL = StepModel(base_ms=10, token_ms=0.05, knee_tokens=32, compute_token_ms=0.8, draft_ms=1.5)
ACCEPT = [0.8, 0.6, 0.4, 0.3, 0.2]


def test_step_time_is_memory_bound_below_the_knee_and_compute_bound_above():
    assert MODEL.step_ms(8, 0) == pytest.approx(10 + 0.05 * 8)
    assert MODEL.step_ms(32, 3) == pytest.approx(10 + 0.05 * 32 + 1.5 * 3)
    assert MODEL.step_ms(64, 1) == pytest.approx(10 + 0.05 * 32 + 0.8 * 32 + 1.5)


def test_acceptance_length_and_the_conditional_rates_behind_per_position_counters():
    assert acceptance_length(ACCEPT, 0) == 1
    assert acceptance_length(ACCEPT, 3) == pytest.approx(1 + 0.8 + 0.8 * 0.6 + 0.8 * 0.6 * 0.4)
    per_position = [0.8, 0.48, 0.192]  # what vLLM's accepted_per_pos / drafts gives for these rates
    assert conditional_from_positions(per_position) == pytest.approx([0.8, 0.6, 0.4])
    assert conditional_from_positions([0.5, 0.0, 0.0]) == [0.5, 0.0, 0.0]


def test_speedup_and_the_oracle_in_closed_form():
    c, k = 4, 3
    al = acceptance_length(ACCEPT, k)
    assert tpot_ms(MODEL, ACCEPT, c, k) == pytest.approx(MODEL.step_ms(c * 4, 3) / al)
    assert speedup(MODEL, ACCEPT, c, k) == pytest.approx(MODEL.step_ms(c, 0) / (MODEL.step_ms(c * 4, 3) / al))
    # the oracle verifies and drafts only what is accepted: never slower, equal when all is accepted
    assert oracle_speedup(MODEL, ACCEPT, c, k) > speedup(MODEL, ACCEPT, c, k)
    assert oracle_speedup(MODEL, [1.0] * 3, c, 3) == pytest.approx(speedup(MODEL, [1.0] * 3, c, 3))
    # past the knee verification costs more than drafts buy: no K pays at concurrency 64
    assert max(speedup(MODEL, ACCEPT, 64, k) for k in range(1, 6)) < 1 < speedup(MODEL, ACCEPT, 1, 1)


def test_fit_recovers_a_known_model_from_its_points():
    points = [(c * (k + 1), k, MODEL.step_ms(c * (k + 1), k)) for c in (1, 4, 16, 64) for k in (0, 1, 3)]
    got = fit(points)
    assert got.model.knee_tokens == 32
    for name in ("base_ms", "token_ms", "compute_token_ms", "draft_ms"):
        assert getattr(got.model, name) == pytest.approx(getattr(MODEL, name), rel=1e-6), name
    assert got.max_error < 1e-9


def test_fit_takes_no_knee_from_noise_and_stays_close_under_it():
    rng = random.Random(0)
    line = StepModel(base_ms=10, token_ms=0.2, draft_ms=1.0)
    points = [(v, k, line.step_ms(v, k) * (1 + rng.uniform(-0.01, 0.01))) for v, k in
              [(1, 0), (4, 0), (16, 0), (2, 1), (8, 1), (32, 1), (4, 3), (16, 3), (64, 3)]]
    got = fit(points)
    assert math.isinf(got.model.knee_tokens)
    assert got.max_error < 0.03
    assert got.model.token_ms == pytest.approx(0.2, rel=0.1)


@pytest.mark.parametrize("text, message", [
    ("token=1", "base=N (ms per iteration) is required"),
    ("base=1,speed=2", "'speed=2' is not one of base=N"),
    ("base=x", "'base=x': 'x' is not a number"),
    ("base=0", "a step model needs base > 0 ms"),
])
def test_parse_names_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        StepModel.parse(text)
    assert StepModel.parse("base=8,knee=256,compute=0.1") == StepModel(8, knee_tokens=256, compute_token_ms=0.1)
