"""The acceptance views (analysis/acceptance_views.py) of a real run against the emulator's ground
truth (loadgen/emulator/profile.py): AL by output position follows a profile's position_slope bucket
by bucket, and per-request AL spreads as a profile's request_spread says, with tolerances from the
sample size (tests/integration/test_emulator_ground_truth.py's Z standard errors).

One module-scoped emulator and one run of three categories of equal length (ignore_eos): "position"
(position_slope 0.8), "spread" (request_spread 0.3) and "steady" (neither)."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
from rich.console import Console

from loadgen.analysis.acceptance_views import position_bucket_tokens
from loadgen.config import RunConfig
from loadgen.emulator.launch import EmulatorProcess
from loadgen.emulator.profile import expected_acceptance_length, step_probabilities
from loadgen.records import RequestRecord
from loadgen.run import run

from .test_emulator_ground_truth import Z, _assert_mean_matches, _moments

ACCEPT = [0.8, 0.6, 0.4]
MAX_TOKENS, PER_CATEGORY = 128, 48
SLOPE, SPREAD = 0.8, 0.3
PROFILE = {"position": {"accept": ACCEPT, "position_slope": SLOPE},
           "spread": {"accept": ACCEPT, "request_spread": SPREAD}, "default": ACCEPT}


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """(report.json's content, the journal's records by category) of one run of the three categories."""
    folder = tmp_path_factory.mktemp("views")
    (folder / "profile.json").write_text(json.dumps(PROFILE))
    workload = folder / "w.jsonl"
    workload.write_text("".join(json.dumps({"prompt_token_ids": list(range(1000 + i, 1064 + i)), "category": c}) + "\n"
                                for i, c in enumerate(("position", "spread", "steady"))))
    with EmulatorProcess(["--ttft-ms", "1", "--step-ms", "1", "--seed", "5",
                          "--accept-profile", str(folder / "profile.json")]) as emu:
        report = run(RunConfig(url=emu.url, workload=str(workload), num_requests=3 * PER_CATEGORY, concurrency=16,
                               max_tokens=MAX_TOKENS, output_dir=folder / "out", progress=False, plots=False),
                     Console(file=io.StringIO()))
    records: dict[str, list[RequestRecord]] = {}
    for line in (folder / "out" / "requests.jsonl").read_text().splitlines():
        r = RequestRecord.from_json(json.loads(line))
        records.setdefault(r.category, []).append(r)
    return report.to_json(), records


def test_al_by_position_follows_the_position_slope_bucket_by_bucket(measured):
    report, records = measured
    width = position_bucket_tokens(MAX_TOKENS)
    views = report["acceptance"]
    assert views["bucket_tokens"] == width == 16
    buckets = views["by_category"]["position"]["by_position"]
    # each step where it starts (t, the prefill's token included), from the journal
    steps: dict[int, list[tuple[int, int]]] = {}
    for r in records["position"]:
        at = r.chunk_tokens[0]
        for n in r.chunk_tokens[1:]:
            steps.setdefault(at // width, []).append((at, n))
            at += n
    assert [b["steps"] for b in buckets] == [len(steps[b]) for b in sorted(steps)]
    # every bucket but the last (its steps are cut short by max_tokens) within Z standard errors of
    # the profile's expectation at each step's position
    for bucket in buckets[:-1]:
        b = bucket["start_tokens"] // width
        measured_al = _assert_mean_matches(
            steps[b], lambda t: step_probabilities(ACCEPT, position_frac=t / MAX_TOKENS, position_slope=SLOPE))
        assert bucket["acceptance_length"] == pytest.approx(measured_al)
    first, late = buckets[0]["acceptance_length"], buckets[-2]["acceptance_length"]
    assert first < expected_acceptance_length(ACCEPT) < late  # rises along the generation


def test_per_request_al_spreads_as_the_request_spread_says(measured):
    """u_r ~ U(1 - s, 1 + s) scales every p_i of a request: the per-request AL's variance is that of
    E[AL | u] over u plus each request's own sampling noise (step variance / steps)."""
    report, _ = measured
    per_request = {c: report["acceptance"]["by_category"][c]["per_request"] for c in ("spread", "steady")}

    def noise(scale: float) -> float:  # variance of one request's mean tokens per step
        mean, var = _moments(step_probabilities(ACCEPT, scale=scale))
        return var / ((MAX_TOKENS - 1) / mean)

    grid = np.linspace(1 - SPREAD, 1 + SPREAD, 201)
    means = np.array([expected_acceptance_length(ACCEPT, scale=u) for u in grid])
    expected_std = math.sqrt(float(means.var()) + float(np.mean([noise(u) for u in grid])))
    steady_std = math.sqrt(noise(1.0))
    for category, expected in (("spread", expected_std), ("steady", steady_std)):
        d = per_request[category]
        assert d["count"] == PER_CATEGORY
        assert abs(d["std"] - expected) <= Z * expected / math.sqrt(2 * d["count"]), (category, d["std"], expected)
    assert per_request["spread"]["std"] > 2 * per_request["steady"]["std"]
    # equal lengths: the pooled AL is the harmonic mean of the requests', below their plain mean
    spread = report["acceptance"]["by_category"]["spread"]["definitions"]
    assert spread["token_weighted"] < spread["per_request_mean"]
