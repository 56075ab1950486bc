"""Two runs compared prompt by prompt: the figures of each prompt both runs sent, the per-prompt
speedups and AL differences, and paired bootstrap intervals for the speedups compare prints.

A prompt's figures are its measured first turns' (ok, two tokens or more), averaged over every
time the run, or any of its repeats, sent it. Per prompt, TPOT speedup = base TPOT / run TPOT,
which is also its user-TPS speedup (a request's user TPS is 1 / its TPOT).

The intervals resample PROMPTS (analysis/bootstrap.py paired_interval: one set of indices for both
runs), so they say how much the figure would move with other prompts of the same kind:
- TPOT ×: the median TPOT over the shared prompts, the baseline's over the run's;
- user TPS ×: the run's median user TPS over the baseline's, likewise;
- output TPS ×: report.json's output TPS is the whole window's and has no per-prompt form; its
  paired form is the pooled rate Σ output tokens / Σ request time over the shared prompts, the
  run's over the baseline's (in a closed loop at one concurrency, output TPS is concurrency × that
  rate), resampled by prompt. compare keeps the reports' own ratio beside it, unpaired: the two
  part where the window holds more than the requests (start-up, a tail at low concurrency);
- AL difference: the mean over prompts of the run's AL less the baseline's (0: no difference).
A speedup whose interval holds 1, or an AL difference whose interval holds 0, is within noise.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..records import RequestRecord
from .bootstrap import paired_interval
from .slo import SLO_METRICS
from .speculative import request_acceptance_length

__all__ = ["MIN_PAIRED_PROMPTS", "PromptFigures", "paired_comparison", "prompt_figures"]

#: fewer shared prompts than this give no interval worth printing
MIN_PAIRED_PROMPTS = 2


@dataclass(frozen=True, slots=True)
class PromptFigures:
    """One prompt's figures in one run, averaged over its sends (and repeats)."""

    category: str
    tpot_s: float
    e2e_s: float
    output_tokens: float
    #: None where no send had a decode step after the first chunk
    acceptance_length: float | None
    sends: int


def prompt_figures(records: Iterable[RequestRecord]) -> dict[str, PromptFigures]:
    """{prompt id: its figures} over measured, successful first turns with a TPOT."""
    sends: dict[str, list[RequestRecord]] = defaultdict(list)
    for r in records:
        if not r.warmup and r.turn == 0 and r.prompt_id and r.ok and SLO_METRICS["tpot"](r) is not None:
            sends[r.prompt_id].append(r)
    out = {}
    for prompt_id, rs in sends.items():
        als = [al for al in (request_acceptance_length(r.chunk_tokens) for r in rs) if al is not None]
        out[prompt_id] = PromptFigures(
            category=rs[0].category, tpot_s=float(np.mean([SLO_METRICS["tpot"](r) for r in rs])),
            e2e_s=float(np.mean([SLO_METRICS["e2e"](r) for r in rs])),
            output_tokens=float(np.mean([r.output_tokens for r in rs])),
            acceptance_length=float(np.mean(als)) if als else None, sends=len(rs))
    return out


def _ratio_of_medians(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.median(numerator, axis=-1) / np.median(denominator, axis=-1)


def _pooled_rate_ratio(run_tokens: np.ndarray, run_s: np.ndarray, base_tokens: np.ndarray,
                       base_s: np.ndarray) -> np.ndarray:
    return (run_tokens.sum(axis=-1) / run_s.sum(axis=-1)) / (base_tokens.sum(axis=-1) / base_s.sum(axis=-1))


def _mean_difference(run: np.ndarray, base: np.ndarray) -> np.ndarray:
    return np.mean(run - base, axis=-1)


def _difference(run: float | None, base: float | None) -> float | None:
    return None if run is None or base is None else run - base


def _quartiles(values: np.ndarray) -> dict[str, float]:
    p25, p50, p75 = np.percentile(values, [25, 50, 75])
    return {"p25": float(p25), "p50": float(p50), "p75": float(p75)}


def _compared(base: Sequence[PromptFigures], run: Sequence[PromptFigures], rng: np.random.Generator,
              pooled_rate: bool) -> dict:
    """The paired figures over aligned prompts (item i of both is the same prompt)."""
    base_tpot = np.array([p.tpot_s for p in base])
    run_tpot = np.array([p.tpot_s for p in run])
    speedup = base_tpot / run_tpot
    out: dict = {
        "prompts": len(base),
        "tpot_speedup": paired_interval(_ratio_of_medians, (base_tpot, run_tpot), rng).to_json(1.0),
        "user_tps_speedup": paired_interval(_ratio_of_medians, (1 / run_tpot, 1 / base_tpot), rng).to_json(1.0),
        "per_prompt_speedup": {**_quartiles(speedup), "share_faster": float(np.mean(speedup > 1))},
        "al_difference": None, "per_prompt_al_difference": None, "output_tps_speedup": None,
    }
    with_al = [(b.acceptance_length, r.acceptance_length) for b, r in zip(base, run)
               if b.acceptance_length is not None and r.acceptance_length is not None]
    if len(with_al) >= MIN_PAIRED_PROMPTS:
        base_al, run_al = (np.array(side) for side in zip(*with_al))
        out["al_difference"] = paired_interval(_mean_difference, (run_al, base_al), rng).to_json(0.0)
        out["per_prompt_al_difference"] = _quartiles(run_al - base_al)
    if pooled_rate:
        out["output_tps_speedup"] = paired_interval(_pooled_rate_ratio, (
            np.array([p.output_tokens for p in run]), np.array([p.e2e_s for p in run]),
            np.array([p.output_tokens for p in base]), np.array([p.e2e_s for p in base])), rng).to_json(1.0)
    return out


def paired_comparison(base: dict[str, PromptFigures], run: dict[str, PromptFigures], *, seed: int = 0) -> dict:
    """The paired figures over the prompts both runs sent, overall and per category (a category's
    only where it has MIN_PAIRED_PROMPTS shared prompts), and each shared prompt's own speedup and AL
    difference; {"prompts": n, "reason": why} where the
    runs share fewer prompts than that (no prompt ids: runs from before ids were recorded)."""
    shared = sorted(set(base) & set(run))
    if len(shared) < MIN_PAIRED_PROMPTS:
        reason = ("the runs' requests carry no prompt ids" if not base or not run else
                  f"the runs share {len(shared)} prompt(s) (by prompt id); pairing needs {MIN_PAIRED_PROMPTS}")
        return {"prompts": len(shared), "reason": reason}
    rng = np.random.default_rng(seed)
    out = _compared([base[p] for p in shared], [run[p] for p in shared], rng, pooled_rate=True)
    by_category: dict[str, list[str]] = defaultdict(list)
    for p in shared:
        by_category[base[p].category].append(p)
    out["per_prompt"] = [{"prompt_id": p, "category": base[p].category, "speedup": base[p].tpot_s / run[p].tpot_s,
                          "al_difference": _difference(run[p].acceptance_length, base[p].acceptance_length)}
                         for p in shared]
    out["categories"] = {name: _compared([base[p] for p in ids], [run[p] for p in ids], rng, pooled_rate=False)
                         for name, ids in sorted(by_category.items()) if len(ids) >= MIN_PAIRED_PROMPTS}
    return out
