"""Bootstrap intervals: the paired one on known per-prompt data, the unpaired one tune uses, and
compare's paired figures on hand-built records."""

import numpy as np
import pytest

from loadgen.analysis.bootstrap import BOOTSTRAP_SAMPLES, paired_interval, ratio_of_means_interval
from loadgen.analysis.paired import paired_comparison, prompt_figures
from tests.records import streamed_record


def _ratio_of_medians(a, b):
    return np.median(a, axis=-1) / np.median(b, axis=-1)


def _prompts(seed: int, n: int = 200) -> np.ndarray:
    """Per-prompt TPOTs that vary widely between prompts (as real prompts do): 10-60 ms."""
    return np.random.default_rng(seed).uniform(0.010, 0.060, n)


def test_a_paired_interval_holds_the_true_speedup():
    base = _prompts(1)
    noise = np.random.default_rng(2).normal(1.0, 0.03, base.size)
    run = base / 1.5 * noise  # every prompt 1.5x faster, give or take 3 %
    interval = paired_interval(_ratio_of_medians, (base, run), np.random.default_rng(0))
    assert interval.low < 1.5 < interval.high and not interval.contains(1.0)
    assert interval.high - interval.low < 0.1  # pairing cancels the 6x spread between prompts


def test_no_effect_is_within_noise():
    base = _prompts(3)
    run = base * np.random.default_rng(4).normal(1.0, 0.05, base.size)
    interval = paired_interval(_ratio_of_medians, (base, run), np.random.default_rng(0))
    assert interval.contains(1.0) and interval.to_json(1.0)["within_noise"] is True


def test_pairing_is_narrower_than_resampling_each_run_alone():
    base = _prompts(5)
    run = base / 1.2
    paired = paired_interval(lambda b, r: np.mean(b, axis=-1) / np.mean(r, axis=-1), (base, run),
                             np.random.default_rng(0))
    unpaired = ratio_of_means_interval(base, run, np.random.default_rng(0))
    assert paired.value == pytest.approx(1.2) == unpaired.value
    assert unpaired.low < 1.2 < unpaired.high
    assert paired.high - paired.low < (unpaired.high - unpaired.low) / 10


def test_the_same_seed_gives_the_same_interval():
    base, run = _prompts(6), _prompts(7)
    first = paired_interval(_ratio_of_medians, (base, run), np.random.default_rng(11))
    assert first == paired_interval(_ratio_of_medians, (base, run), np.random.default_rng(11))
    assert first != paired_interval(_ratio_of_medians, (base, run), np.random.default_rng(12))
    assert BOOTSTRAP_SAMPLES >= 2000


def _run(step_ns: dict[str, int], tokens: list[int], *, sends: int = 1) -> list:
    """One record per prompt (and send), its chunks `step_ns` apart, carrying `tokens` each."""
    out = []
    for i, (prompt, step) in enumerate(step_ns.items()):
        for _ in range(sends):
            r = streamed_record(i, tokens, scheduled_ns=0, category="even" if i % 2 else "odd", step_ns=step)
            r.prompt_id = prompt
            out.append(r)
    return out


def test_paired_comparison_of_hand_built_runs():
    steps = {f"p{i}": int(v * 1e9) for i, v in enumerate(_prompts(8, 40))}
    base = prompt_figures(_run(steps, [1] * 17))
    # twice the tokens per step at the same step time: TPOT halves, AL 1 -> 2
    faster = prompt_figures(_run(steps, [1] + [2] * 8, sends=2))
    result = paired_comparison(base, faster)
    assert result["prompts"] == 40 and faster["p0"].sends == 2
    assert result["tpot_speedup"]["value"] == pytest.approx(2.0) and not result["tpot_speedup"]["within_noise"]
    assert result["al_difference"]["value"] == pytest.approx(1.0) and not result["al_difference"]["within_noise"]
    assert result["per_prompt_speedup"]["share_faster"] == 1.0
    assert result["output_tps_speedup"]["low"] > 1 and set(result["categories"]) == {"odd", "even"}
    same = paired_comparison(base, prompt_figures(_run(steps, [1] * 17)))
    assert same["tpot_speedup"]["within_noise"] and same["al_difference"]["within_noise"]


def test_runs_without_shared_prompt_ids_are_not_paired():
    steps = {"a": 10_000_000, "b": 20_000_000}
    no_ids = _run(steps, [1, 1, 1])
    for r in no_ids:
        r.prompt_id = ""
    assert "no prompt ids" in paired_comparison(prompt_figures(no_ids), prompt_figures(_run(steps, [1, 1])))["reason"]
    other = prompt_figures(_run({"c": 10_000_000, "d": 1}, [1, 1]))
    assert "share 0 prompt" in paired_comparison(prompt_figures(_run(steps, [1, 1])), other)["reason"]
