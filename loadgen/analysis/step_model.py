"""What a draft length K costs and buys, as a model: one engine iteration's time as a function of
the tokens the batch verifies, and the tokens each request gains per iteration from its acceptance.

An iteration of a batch of R requests with draft length K verifies V = R * (K + 1) tokens (each
request's K drafts plus the one the target always adds) and runs the drafter K times. Its time is

    step_ms(V, K) = base_ms + token_ms * min(V, knee) + compute_token_ms * max(0, V - knee) + draft_ms * K

memory-bound below the knee (each extra token nearly free: token_ms small), compute-bound above it.
Each request gains AL(K) = 1 + p1 + p1*p2 + ... + p1*...*pK tokens per iteration (p_i the
conditional acceptance at position i), so with c requests always running (a closed loop):

    TPOT(c, K) = step_ms(c * (K + 1), K) / AL(K)      speedup(c, K) = TPOT(c, 0) / TPOT(c, K)

An oracle drafter proposes exactly the tokens that will be accepted: per request it verifies AL(K)
tokens and drafts AL(K) - 1 positions, so nothing it verifies is rejected.

The emulator runs this model as its ground truth (`loadgen emulate --cost ...`); `loadgen tune`
fits it to measured runs (`fit`) and predicts the points that were not run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["StepModel", "acceptance_length", "conditional_from_positions", "tpot_ms", "speedup", "oracle_speedup",
           "oracle_speedup_at", "fit", "Fit", "KNEE_GAIN", "KNEE_GRID"]

#: a knee is fitted only where it cuts the straight line's squared error by this factor
KNEE_GAIN = 0.5
#: knees tried between the measured token counts (log-spaced), besides the counts themselves
KNEE_GRID = 96


@dataclass(frozen=True)
class StepModel:
    base_ms: float
    token_ms: float = 0.0
    knee_tokens: float = math.inf
    compute_token_ms: float = 0.0
    draft_ms: float = 0.0

    def __post_init__(self) -> None:
        if self.base_ms <= 0 or min(self.token_ms, self.compute_token_ms, self.draft_ms) < 0 or self.knee_tokens <= 0:
            raise ValueError("a step model needs base > 0 ms, per-token and draft costs >= 0 and a knee > 0 tokens")

    def step_ms(self, verified_tokens: float, draft_len: float) -> float:
        """One iteration's time for a batch verifying `verified_tokens`, drafting `draft_len` positions."""
        below = min(verified_tokens, self.knee_tokens)
        above = max(0.0, verified_tokens - self.knee_tokens)
        return self.base_ms + self.token_ms * below + self.compute_token_ms * above + self.draft_ms * draft_len

    @classmethod
    def parse(cls, text: str) -> StepModel:
        """`base=8,token=0.02,knee=256,compute=0.1,draft=1.5` (ms, ms per token, tokens, ms per token,
        ms per draft position); only base is required."""
        names = {"base": "base_ms", "token": "token_ms", "knee": "knee_tokens", "compute": "compute_token_ms",
                 "draft": "draft_ms"}
        values: dict[str, float] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, sep, number = item.partition("=")
            if not sep or key.strip() not in names:
                raise ValueError(f"{item!r} is not one of {', '.join(k + '=N' for k in names)}")
            try:
                values[names[key.strip()]] = float(number)
            except ValueError:
                raise ValueError(f"{item!r}: {number!r} is not a number") from None
        if "base_ms" not in values:
            raise ValueError("base=N (ms per iteration) is required")
        return cls(**values)


def acceptance_length(conditional: Sequence[float], draft_len: int) -> float:
    """Expected tokens per iteration with the first `draft_len` positions drafted."""
    total, reach = 1.0, 1.0
    for p in conditional[:draft_len]:
        reach *= p
        total += reach
    return total


def conditional_from_positions(per_position: Sequence[float]) -> list[float]:
    """Unconditional per-position acceptance (share of drafts whose position i was accepted, as the
    engines' per-position counters give it) -> conditional acceptance p_i = r_i / r_(i-1)."""
    out, previous = [], 1.0
    for rate in per_position:
        out.append(rate / previous if previous > 0 else 0.0)
        previous = rate
    return out


def tpot_ms(model: StepModel, conditional: Sequence[float], concurrency: int, draft_len: int) -> float:
    return model.step_ms(concurrency * (draft_len + 1), draft_len) / acceptance_length(conditional, draft_len)


def speedup(model: StepModel, conditional: Sequence[float], concurrency: int, draft_len: int) -> float:
    """TPOT without speculation over TPOT with draft length K, at `concurrency` requests running."""
    return tpot_ms(model, conditional, concurrency, 0) / tpot_ms(model, conditional, concurrency, draft_len)


def oracle_speedup(model: StepModel, conditional: Sequence[float], concurrency: int, draft_len: int) -> float:
    """The speedup of a drafter that proposes exactly what K drafts would have had accepted."""
    return oracle_speedup_at(model, acceptance_length(conditional, draft_len), concurrency)


def oracle_speedup_at(model: StepModel, al: float, concurrency: int) -> float:
    """The oracle's speedup where the drafts gain `al` tokens per iteration (say, one category's
    measured AL): it verifies those AL tokens and drafts AL - 1 positions per request."""
    return model.step_ms(concurrency, 0) / (model.step_ms(concurrency * al, al - 1) / al)


@dataclass(frozen=True)
class Fit:
    """A StepModel fitted to measured iterations, and how well it fits them."""

    model: StepModel
    #: (verified tokens, draft length, measured ms, fitted ms) per measured point
    points: tuple[tuple[float, int, float, float], ...]

    @property
    def max_error(self) -> float:
        """The largest relative error over the points the fit rests on."""
        return max((abs(fitted - measured) / measured for _, _, measured, fitted in self.points), default=0.0)


def fit(points: Sequence[tuple[float, int, float]]) -> Fit:
    """Least squares over (verified tokens, draft length, measured step ms), in relative error. A knee
    (at a measured token count or on a log grid between them) is taken only where it halves the
    error of the straight line:
    noise alone would always find one. Costs that come out negative are clamped to 0 (the fit says
    only that they are too small to see)."""
    if len(points) < 2:
        raise ValueError("fitting step times needs at least two measured points")
    tokens = np.array([p[0] for p in points], dtype=float)
    drafts = np.array([p[1] for p in points], dtype=float)
    measured = np.array([p[2] for p in points], dtype=float)
    weights = 1.0 / measured  # relative error: a 1 ms miss on a 5 ms step matters more than on 50 ms
    best: tuple[float, StepModel] | None = None
    grid = np.geomspace(tokens.min(), tokens.max(), KNEE_GRID).tolist() if tokens.max() > tokens.min() else []
    inner = sorted({*tokens.tolist(), *grid})[1:-1]  # a knee at either end is a straight line
    for knee in [math.inf, *inner]:
        below, above = np.minimum(tokens, knee), np.maximum(0.0, tokens - knee)
        columns = [np.ones_like(tokens), below, drafts] + ([above] if math.isfinite(knee) else [])
        design = np.stack(columns, axis=1)
        coef, *_ = np.linalg.lstsq(design * weights[:, None], measured * weights, rcond=None)
        coef = np.maximum(coef, [1e-9, 0.0, 0.0] + ([0.0] if math.isfinite(knee) else []))
        model = StepModel(base_ms=float(coef[0]), token_ms=float(coef[1]), draft_ms=float(coef[2]), knee_tokens=knee,
                          compute_token_ms=float(coef[3]) if math.isfinite(knee) else 0.0)
        err = float(np.sum(((design @ coef) - measured) ** 2 * weights ** 2))
        if best is None or err < best[0] * KNEE_GAIN:
            best = (err, model)
    assert best is not None
    model = best[1]
    return Fit(model, tuple((float(v), int(k), float(m), model.step_ms(v, k))
                            for v, k, m in zip(tokens, drafts, measured, strict=True)))
