"""`loadgen emulate --cost`: measured from the client's journal, every step takes the cost model's
time for the batch running (loadgen/analysis/step_model.py), and TPOT is the model's closed form:
the ground truth that draft-length tuning is checked against.

The model has a knee at 16 verified tokens, so the regimes differ: at concurrency 1 drafting 3
tokens verifies 4 (below the knee, nearly free) and speculation wins; at concurrency 8 it verifies
32, far past the knee, and speculation loses.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from loadgen.analysis.step_model import StepModel, acceptance_length, speedup, tpot_ms
from loadgen.records import read_journal

COST = "base=5,token=0.05,knee=16,compute=1.0,draft=1"
ACCEPT = (0.8, 0.6, 0.4)
MAX_TOKENS = 128
MARGIN_NS = 3_000_000  # loopback delivery and scheduling on a busy machine: far below this


def steady_steps(records, concurrency: int) -> tuple[np.ndarray, np.ndarray]:
    """(gap ms, tokens) of every step (the gap between two token-carrying chunks of a request) whose
    time the emulator fixed while exactly `concurrency` requests ran in it. It fixes a step's time
    when it sends the chunk before, so that chunk must have come while all `concurrency` requests
    were in flight on the client, each sent at least 2 margins before and ending at least 1 margin
    after: the emulator counts a request from its arrival (after the client sent it) to its last
    chunk (before the client read it), so it ran them all then too. Left out: the ramp-up, the run's
    drain, and the moments between one request's end and the next one's arrival."""
    starts = np.array([r.sent_ns for r in records]) + 2 * MARGIN_NS
    ends = np.array([r.end_ns for r in records]) - MARGIN_NS
    gaps, tokens = [], []
    for r in records:
        t = np.array(r.chunk_ns)
        full = ((starts[:, None] <= t[:-1]) & (t[:-1] <= ends[:, None])).sum(axis=0) == concurrency
        gaps.append(np.diff(t)[full] / 1e6)
        tokens.append(np.array(r.chunk_tokens)[1:][full])
    return np.concatenate(gaps), np.concatenate(tokens)


def accepted_shares(conditional: tuple[float, ...], draft_len: int) -> list[float]:
    """P(a drafts accepted) for a = 0..draft_len."""
    return [math.prod(conditional[:a]) * (1 - conditional[a] if a < draft_len else 1) for a in range(draft_len + 1)]


def expected_steps(tokens: int, conditional: tuple[float, ...], draft_len: int) -> float:
    """Expected decode steps to make `tokens` tokens when each makes 1 + accepted drafts and the last
    is cut to what max_tokens allows (so a request takes a little more than tokens / AL steps)."""
    shares = accepted_shares(conditional, draft_len)
    steps = [0.0] * (tokens + 1)
    for t in range(1, tokens + 1):
        steps[t] = 1 + sum(p * steps[max(0, t - 1 - a)] for a, p in enumerate(shares))
    return steps[tokens]


def test_the_emulator_steps_and_tpot_follow_the_cost_model(emulator, run_loadgen, tmp_path):
    model = StepModel.parse(COST)
    tpots: dict[tuple[int, int], float] = {}
    for accept in ((), ACCEPT):
        k = len(accept)
        al = acceptance_length(ACCEPT, k)
        emu = emulator("--ttft-ms", "5", "--cost", COST, "--accept", ",".join(map(str, accept)), "--seed", "0")
        for c in (1, 8):
            step = model.step_ms(c * (k + 1), k)
            # waves of `c` requests, at least two (the steady part lies between them), over about 2 s,
            # 5 s where acceptance varies and TPOT needs more steps
            request_s = step * (MAX_TOKENS - 1) / al / 1e3
            out = tmp_path / f"k{k}c{c}"
            run_loadgen(url=emu.url, concurrency=c, num_requests=c * max(2, round((5 if k else 2) / request_s)),
                        max_tokens=MAX_TOKENS, output_dir=out)
            records = list(read_journal(out / "requests.jsonl"))
            assert all(r.ok and r.output_tokens == MAX_TOKENS for r in records)
            gaps, tokens = steady_steps(records, c)
            assert len(gaps) > 300, len(gaps)
            # A step is due one step time after the last one's due time (never after its late send);
            # sends land on a ~1 ms timer grid, centred on the due time, and the errors telescope over
            # a request's consecutive steps: the mean over hundreds of steps is within ~0.05 % of the
            # model on an idle machine; 2 % leaves room for a busy one's lateness at the ends.
            assert gaps.mean() == pytest.approx(step, rel=0.02), (k, c, gaps.mean(), step)
            # TPOT, decode time over decode tokens: steps make AL tokens on average, but a request's
            # last step is cut at max_tokens, so it takes expected_steps (0.4 step more than
            # (MAX_TOKENS - 1) / AL). The acceptance drawn varies: over n steps its relative standard
            # error is sd(tokens per step) / sqrt(n) / AL (1.0 / sqrt(n) / 2.47 here: 1.7 % at
            # concurrency 1, 1.0 % at 8): the tolerance is 3 of them (the draws are seeded besides,
            # so a run repeats them nearly exactly) plus 1 % for the step time, at most 6.5 %.
            tpot = gaps.sum() / tokens.sum()
            capped = step * expected_steps(MAX_TOKENS - 1, ACCEPT, k) / (MAX_TOKENS - 1)
            shares = accepted_shares(ACCEPT, k)
            sd = math.sqrt(sum(p * (1 + a - al) ** 2 for a, p in enumerate(shares)))
            tolerance = 0.01 + 3 * sd / math.sqrt(len(gaps)) / al
            assert tolerance < 0.065, tolerance
            assert tpot == pytest.approx(capped, rel=tolerance), (k, c, tpot, capped, tolerance)
            assert capped == pytest.approx(tpot_ms(model, ACCEPT, c, k), rel=0.01)  # the cap's share is small
            tpots[(k, c)] = tpot
            print(f"K={k} c={c}: {len(gaps)} steps, step {gaps.mean():.3f} ms (model {step:.3f}), TPOT {tpot:.3f} ms "
                  f"(model {tpot_ms(model, ACCEPT, c, k):.3f}, with the cap {capped:.3f}, tolerance {tolerance:.1%})")
    # the regimes: below the knee speculation pays (model speedup 1.52), far past it it costs (0.54)
    assert speedup(model, ACCEPT, 1, 3) > 1.5 and speedup(model, ACCEPT, 8, 3) < 0.55
    assert tpots[(0, 1)] / tpots[(3, 1)] > 1.3 and tpots[(0, 8)] / tpots[(3, 8)] < 0.65
