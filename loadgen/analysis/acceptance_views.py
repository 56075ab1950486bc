"""Acceptance length three ways, by output position, its spread over requests, and against output length.

The field quotes acceptance length (AL) under several definitions, and they differ on the same
stream. Each works on a request's tokens per chunk (chunk_tokens; the first chunk is the
prefill's token):

- token-weighted (steps pooled): every decode step of every request in one pool, tokens / steps
  (speculative.mean_from_histogram; report.speculative.client.acceptance_length). Long requests
  weigh more, as they do in the server's own counters.
- per-request mean: each request's tokens / steps (first chunk excluded), then the plain mean over
  requests, as SPEED-Bench's per-category table averages. Every request weighs the same.
- specdec_bench: the figure NVIDIA Model-Optimizer's specdec_bench prints for the same stream
  (specdec_bench_request_acceptance_length): per request the chunk lengths with the first chunk
  dropped only where it holds one token and the LAST chunk always dropped, then the plain mean over
  requests.

They part where requests differ in length and in AL (a skewed per-request AL: the pooled figure
leans to the long requests), where acceptance changes along a generation (long requests see more
of the late positions), and on short requests (dropping the last, often truncated, chunk moves
specdec_bench's figure most when a request has few steps).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

from .speculative import mean_from_histogram, request_acceptance_length, step_histogram
from .stats import distribution

__all__ = ["specdec_bench_request_acceptance_length", "acceptance_definitions", "position_bucket_tokens",
           "al_by_position", "al_by_output_length", "acceptance_breakdown"]


def specdec_bench_request_acceptance_length(tokens: Sequence[int]) -> float:
    """One request's AL as NVIDIA Model-Optimizer's specdec_bench counts it: [1, 3, 4, 2] -> 3.5.

    Source: NVIDIA/Model-Optimizer examples/specdec_bench/specdec_bench/metrics/base.py,
    Metric.trim_beam_lengths (commit 1cb88ef9): the first chunk is dropped where it holds exactly one
    token (the prefill's), the last chunk is always dropped (EOS or max_tokens cut its speculation
    short), and where nothing is left the request counts as [1]. metrics/acceptance_rate.py
    AcceptanceRate.process_final then takes the mean of the kept lengths per request, and
    metrics/specbench.py SpecBench._aggregate_request_metrics the plain mean over requests
    (Average_AL) and over each category's requests (Category_AL). Older versions of the same file
    (acceptance_rate.py at 6c5c5073) trimmed the same way; the one at 037a9f69 kept every chunk
    and stripped only the EOS token in the engine wrapper (models/vllm.py VLLMModel.run).
    """
    start = 1 if tokens and tokens[0] == 1 else 0
    kept = tokens[start:len(tokens) - 1]
    return sum(kept) / len(kept) if len(kept) else 1.0


def acceptance_definitions(chunk_token_lists: Sequence[Sequence[int]]) -> dict:
    """The three definitions over successful requests' tokens per chunk.

    [[1, 3, 3, 3, 1], [1, 2]]: token-weighted (3+3+3+1+2) / 5 = 2.4; per request 2.5 and 2.0, mean
    2.25; specdec_bench [3, 3] -> 3.0 and [] -> 1.0, mean 2.0.
    """
    hist = step_histogram(chunk_token_lists)
    per_request = [a for a in map(request_acceptance_length, chunk_token_lists) if a is not None]
    specdec = [specdec_bench_request_acceptance_length(t) for t in chunk_token_lists if len(t)]
    return {"token_weighted": mean_from_histogram(hist),
            "per_request_mean": float(np.mean(per_request)) if per_request else None,
            "specdec_bench": float(np.mean(specdec)) if specdec else None,
            "requests": len(chunk_token_lists), "steps": sum(hist.values())}


def position_bucket_tokens(max_tokens: int) -> int:
    """Bucket width for AL by output position: an eighth of max_tokens, rounded up to a multiple
    of 8 (at least 8), so every run has at most eight buckets whatever its length: 64 -> 8,
    512 -> 64, 1000 -> 128."""
    return max(8, -(-max(max_tokens, 1) // 64) * 8)


def al_by_position(chunk_token_lists: Iterable[Sequence[int]], width: int) -> list[dict]:
    """Tokens per step pooled by the output position where the step starts: the tokens already
    produced before it, the prefill's included (the emulator's `t`). [[1, 3, 3, 2]] at width 4:
    steps at 1 and 4 then 7 -> [0, 4): 3 over 1 step; [4, 8): 5 over 2 steps.

    A request's last step lands near its end and may be cut short by max_tokens (or ended by EOS),
    so the last bucket of a run at fixed length reads low: compare the others."""
    steps: dict[int, int] = defaultdict(int)
    tokens: dict[int, int] = defaultdict(int)
    for chunks in chunk_token_lists:
        if not len(chunks):
            continue
        at = chunks[0]
        for n in chunks[1:]:
            bucket = at // width
            steps[bucket] += 1
            tokens[bucket] += n
            at += n
    return [{"start_tokens": b * width, "end_tokens": (b + 1) * width, "steps": steps[b], "tokens": tokens[b],
             "acceptance_length": tokens[b] / steps[b]} for b in sorted(steps)]


def al_by_output_length(chunk_token_lists: Iterable[Sequence[int]], width: int) -> list[dict]:
    """Per-request AL (first chunk excluded) binned by the request's output tokens n, start < n <= end
    (so outputs of exactly max_tokens share the top bin): mean and std over the bin's requests.
    Where acceptance falls along a generation the long requests' AL is lower, which pulls the
    token-weighted figure below the per-request mean."""
    bins: dict[int, list[float]] = defaultdict(list)
    for chunks in chunk_token_lists:
        al = request_acceptance_length(chunks)
        if al is not None:
            bins[(sum(chunks) - 1) // width].append(al)
    return [{"start_tokens": b * width, "end_tokens": (b + 1) * width, "requests": len(bins[b]),
             "acceptance_length_mean": float(np.mean(bins[b])), "acceptance_length_std": float(np.std(bins[b]))}
            for b in sorted(bins)]


def acceptance_breakdown(chunk_token_lists: Sequence[Sequence[int]], width: int) -> dict:
    """The definitions, the per-request AL distribution (first chunk excluded), AL by position and
    against output length, for one group of successful requests."""
    per_request = [a for a in map(request_acceptance_length, chunk_token_lists) if a is not None]
    return {"definitions": acceptance_definitions(chunk_token_lists),
            "per_request": distribution(per_request),
            "by_position": al_by_position(chunk_token_lists, width),
            "by_output_length": al_by_output_length(chunk_token_lists, width)}
