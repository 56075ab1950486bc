"""The emulator's acceptance ground truth (loadgen/emulator/profile.py): acceptance that moves with
the output position, varies per request, falls with temperature and rises with prompt-output
overlap, measured off the wire against profile.expected_acceptance_length().

Every tolerance is derived from the sample: the exact per-step distribution of tokens (1 + accepted
drafts) under the profile's probabilities gives each step's mean and variance, and a measured mean
must lie within Z standard errors of the expected one (Z = 4: a correct emulator fails one run in
about 16 000). One module-scoped emulator (vLLM personality, one event per step with cumulative
usage) serves every test; the category header picks the profile entry.
"""

from __future__ import annotations

import json
import math
import random
import statistics
from concurrent.futures import ThreadPoolExecutor

import pytest

from loadgen.emulator.launch import EmulatorProcess
from loadgen.emulator.profile import (
    DEFAULT_TEMPERATURE_SLOPE,
    expected_acceptance_length,
    load_accept_profile,
    step_probabilities,
)
from loadgen.emulator.server import ID_SEGMENT

from .test_emulator_personalities import CONTINUOUS, stream

ACCEPT = [0.8, 0.6, 0.4]
K = len(ACCEPT)
MAX_TOKENS = 64
Z = 4.0  # standard errors a measured mean may stray from its expected value
PROFILE = {
    "position": {"accept": ACCEPT, "position_slope": 0.8},
    "spread": {"accept": ACCEPT, "request_spread": 0.3},
    "copying": {"accept": ACCEPT, "copy": 0.5, "copy_gain": 0.8},
    "default": ACCEPT,
}


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    path = tmp_path_factory.mktemp("profile") / "profile.json"
    path.write_text(json.dumps(PROFILE))
    with EmulatorProcess(["--engine", "vllm", "--ttft-ms", "1", "--step-ms", "2", "--seed", "3",
                          "--accept-profile", str(path)]) as server:
        yield server


def _generate(url: str, category: str, n: int, **fields) -> list[list[dict]]:
    """`n` streamed requests of MAX_TOKENS in `category`, 16 at a time: each request's events."""
    body = {"model": "emulator", "prompt": list(range(1000, 1256)), "max_tokens": MAX_TOKENS, "stream": True,
            "ignore_eos": True, **CONTINUOUS["vllm"], **fields}

    def one(_: int) -> list[dict]:
        status, chunks, _raw = stream(url, body, {"X-Loadgen-Category": category})
        assert status == 200
        return [e for chunk in chunks for e in chunk if e != "[DONE]" and e["choices"]]

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(one, range(n)))


def _steps(events: list[dict]) -> list[tuple[int, int]]:
    """(tokens out before the step, tokens the step produced) for each verify step with room for a
    whole draft (a step near max_tokens is cut short); the first event is the prefill's token."""
    counts = [e["usage"]["completion_tokens"] for e in events]
    assert counts[0] == 1 and counts[-1] == MAX_TOKENS
    return [(t, c - t) for t, c in zip(counts, counts[1:]) if t + K + 1 <= MAX_TOKENS]


def _moments(probs) -> tuple[float, float]:
    """Mean and variance of a step's tokens, 1 + accepted, when position i is accepted with
    conditional probability probs[i]."""
    p_reach, mean, second = 1.0, 0.0, 0.0
    for j, q in enumerate(probs):
        p_stop = p_reach * (1 - q)  # accepted exactly j
        mean, second = mean + p_stop * (1 + j), second + p_stop * (1 + j) ** 2
        p_reach *= q
    mean, second = mean + p_reach * (1 + len(probs)), second + p_reach * (1 + len(probs)) ** 2
    return mean, second - mean * mean


def _assert_mean_matches(steps: list[tuple[int, int]], probs_at) -> float:
    """The steps' mean tokens against the mean of each step's expectation (probs_at(t) its
    probabilities); returns the measured mean."""
    moments = [_moments(probs_at(t)) for t, _ in steps]
    expected = sum(m for m, _ in moments) / len(steps)
    se = math.sqrt(sum(v for _, v in moments)) / len(steps)
    measured = sum(n for _, n in steps) / len(steps)
    assert abs(measured - expected) <= Z * se, (measured, expected, se, len(steps))
    return measured


def test_acceptance_rises_along_the_output_as_the_position_slope_says(emu):
    steps = [s for events in _generate(emu.url, "position", 48) for s in _steps(events)]
    first = [s for s in steps if s[0] < MAX_TOKENS / 2]
    last = [s for s in steps if s[0] >= MAX_TOKENS / 2]
    assert len(first) > 200 and len(last) > 200

    def probs_at(t: int):
        return step_probabilities(ACCEPT, position_frac=t / MAX_TOKENS, position_slope=0.8)

    measured_first = _assert_mean_matches(first, probs_at)
    measured_last = _assert_mean_matches(last, probs_at)
    # the halves' own expectations are far apart (about 2.1 against 2.9 tokens per step)
    assert expected_acceptance_length(ACCEPT, position_frac=0.25, position_slope=0.8) + 0.5 < \
        expected_acceptance_length(ACCEPT, position_frac=0.75, position_slope=0.8)
    assert measured_first + 0.5 < measured_last


def _per_request_al(requests: list[list[dict]]) -> tuple[list[float], list[int]]:
    """Each request's mean tokens per whole-draft step, and its number of such steps."""
    per_request = [_steps(events) for events in requests]
    return [sum(n for _, n in s) / len(s) for s in per_request], [len(s) for s in per_request]


def test_request_spread_gives_the_known_spread_of_per_request_acceptance(emu):
    spread_al, spread_steps = _per_request_al(_generate(emu.url, "spread", 160))
    plain_al, plain_steps = _per_request_al(_generate(emu.url, "default", 160))
    # Known variance of a request's AL: that of E[AL | u_r] over u_r ~ U(0.7, 1.3) (integrated on a
    # fine grid), plus the step noise of a mean over the request's steps.
    grid = [0.7 + 0.6 * (i + 0.5) / 2000 for i in range(2000)]
    moments = [_moments(step_probabilities(ACCEPT, scale=u)) for u in grid]
    between = statistics.pvariance([m for m, _ in moments])
    within = statistics.fmean(v for _, v in moments) * statistics.fmean(1 / n for n in spread_steps)
    plain_within = _moments(ACCEPT)[1] * statistics.fmean(1 / n for n in plain_steps)
    measured, plain = statistics.variance(spread_al), statistics.variance(plain_al)
    # a sample variance of R values has relative standard error about sqrt(2 / (R - 1))
    for value, known, count in ((measured, between + within, len(spread_al)), (plain, plain_within, len(plain_al))):
        assert abs(value / known - 1) <= Z * math.sqrt(2 / (count - 1)), (value, known)
    assert measured > 3 * plain
    # the mean is E[AL | u_r] averaged over u_r
    expected_mean = statistics.fmean(m for m, _ in moments)
    se = math.sqrt((between + within) / len(spread_al))
    assert abs(statistics.fmean(spread_al) - expected_mean) <= Z * se


def test_temperature_lowers_acceptance_by_the_default_slope(emu):
    cold = [s for events in _generate(emu.url, "default", 24, temperature=0.0) for s in _steps(events)]
    hot = [s for events in _generate(emu.url, "default", 24, temperature=1.5) for s in _steps(events)]
    measured_cold = _assert_mean_matches(cold, lambda t: ACCEPT)
    measured_hot = _assert_mean_matches(hot, lambda t: step_probabilities(
        ACCEPT, temperature=1.5, temperature_slope=DEFAULT_TEMPERATURE_SLOPE))
    assert measured_hot < measured_cold - 0.5


def _segments(ids: list[int]) -> list[tuple[int, ...]]:
    return [tuple(ids[i:i + ID_SEGMENT]) for i in range(0, len(ids) - ID_SEGMENT + 1, ID_SEGMENT)]


def _copied_share(prompt: list[int], ids: list[int]) -> float:
    """Share of the output's aligned segments found verbatim in the prompt (a random segment of 8
    ids out of 32 000 matches by chance with probability ~1e-33)."""
    grams = {tuple(prompt[i:i + ID_SEGMENT]) for i in range(len(prompt) - ID_SEGMENT + 1)}
    segments = _segments(ids)
    return sum(s in grams for s in segments) / len(segments)


def test_output_ids_copy_prompt_segments_at_the_copy_share(emu):
    prompt = random.Random(7).sample(range(32000), 256)  # distinct ids: a segment's origin is unambiguous
    shares = []
    for category in ("copying", "default"):
        requests = _generate(emu.url, category, 128 if category == "copying" else 8, prompt=prompt,
                             return_token_ids=True)
        ids = [[i for e in events for i in e["choices"][0]["token_ids"]] for events in requests]
        assert all(len(x) == MAX_TOKENS for x in ids)
        shares.append([_copied_share(prompt, x) for x in ids])
        if category == "copying":  # 4-grams of the output are the prompt's, as n-gram drafting would find them
            prompt_grams = {tuple(prompt[i:i + 4]) for i in range(len(prompt) - 3)}
            assert any(tuple(x[i:i + 4]) in prompt_grams for x in ids for i in range(len(x) - 3))
    copying, plain = shares
    # c_r ~ U(0, 1) for copy 0.5: a request's share has variance Var(c) + E[c (1 - c)] / segments
    segments = MAX_TOKENS // ID_SEGMENT
    se = math.sqrt((1 / 12 + (0.5 - 1 / 3) / segments) / len(copying))
    assert abs(statistics.fmean(copying) - 0.5) <= Z * se, statistics.fmean(copying)
    assert statistics.pstdev(copying) > 0.15  # c_r differs per request
    assert plain == [0.0] * len(plain)


def test_copy_gain_lifts_acceptance(emu):
    steps = [s for events in _generate(emu.url, "copying", 48) for s in _steps(events)]
    # the mean over c_r ~ U(0, 1) of each step's expectation, on a fine grid
    grid = [(i + 0.5) / 400 for i in range(400)]
    moments = [_moments(step_probabilities(ACCEPT, copy_share=c, copy_gain=0.8)) for c in grid]
    expected = statistics.fmean(m for m, _ in moments)
    assert expected > expected_acceptance_length(ACCEPT) + 0.5
    # requests differ in c_r, so steps are not independent: the standard error counts requests
    measured = sum(n for _, n in steps) / len(steps)
    between = statistics.pvariance([m for m, _ in moments])
    se = math.sqrt(between / 48 + statistics.fmean(v for _, v in moments) / len(steps))
    assert abs(measured - expected) <= Z * se, (measured, expected, se)


BAD_PROFILES = {
    '{"a": {"accept": [0.5], "slope": 1}}': "unknown key 'slope'",
    '{"a": {"accept": [0.5], "request_spread": 1.5}}': "request_spread must be a number in [0, 1]",
    '{"a": {"accept": [0.5], "position_slope": 3}}': "position_slope must be a number in [-2, 2]",
    '{"a": {"position_slope": 0.5}}': "needs \"accept\"",
    '{"a": {"accept": [0.5, 0.5]}, "b": [0.5]}': "same length",
    '{"a": {"accept": [1.5]}}': "accept must be a list of probabilities",
}


@pytest.mark.parametrize("text", list(BAD_PROFILES))
def test_bad_profile_object_is_one_line_naming_the_mistake(tmp_path, text):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        load_accept_profile(path)
    assert "\n" not in str(info.value) and BAD_PROFILES[text] in str(info.value) and str(path) in str(info.value)


def test_llamacpp_sends_each_token_id_in_verbose_as_llama_server_does(tmp_path):
    """llama-server puts a streamed token's id only in `__verbose.tokens`, and only when the request
    asks `"verbose": true` (see emulator/llamacpp.py StreamEncoder._verbose); the copy share applies."""
    path = tmp_path / "profile.json"
    path.write_text(json.dumps({"default": {"accept": ACCEPT, "copy": 0.5}}))
    prompt = random.Random(8).sample(range(32000), 128)
    body = {"prompt": prompt, "max_tokens": 32, "stream": True}
    with EmulatorProcess(["--engine", "llamacpp", "--ttft-ms", "1", "--step-ms", "1", "--seed", "5",
                          "--accept-profile", str(path)]) as server:
        _status, plain, _raw = stream(server.url, body)
        outputs = [stream(server.url, {**body, "verbose": True})[1] for _ in range(8)]
    assert not any("__verbose" in e for chunk in plain for e in chunk if e != "[DONE]")
    shares = []
    for chunks in outputs:
        tokens = [e for chunk in chunks for e in chunk if e != "[DONE]" and e["choices"][0]["finish_reason"] is None]
        assert len(tokens) == 32
        verbose = [e["__verbose"] for e in tokens]
        assert all(len(v["tokens"]) == 1 and v["content"] == e["choices"][0]["text"] for v, e in zip(verbose, tokens))
        assert [v["tokens_predicted"] for v in verbose] == list(range(1, 33))
        shares.append(_copied_share(prompt, [v["tokens"][0] for v in verbose]))
    assert 0 < statistics.fmean(shares) < 1
