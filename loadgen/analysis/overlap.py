"""Prompt-output overlap on token ids, and how acceptance follows it (--output-ids).

Per request, the output's ids are scored against its prompt's ids the way BLEU-4 scores a
candidate against a reference: for n = 1..4 the modified precision p_n is the share of the
output's n-grams found in the prompt, each distinct n-gram counted at most as often as the prompt
has it (clipped), and the overlap is their geometric mean (0 where any p_n is 0). There is no
brevity penalty: BLEU's punishes a candidate shorter than its reference, and an output shorter
than its prompt (the usual case: a 2k-token document, a 128-token answer) copies no less for it.

p_4, the share of output 4-grams the prompt holds, is also what a prompt-lookup (n-gram) drafter
lives on: it drafts where the last tokens generated occur in the prompt and proposes what followed
them there, so p_4 is about the chance that such a draft's next token is right after a 3-token
match. Taken as a per-token acceptance a (independent from token to token), a K-token n-gram draft
accepts (1 - a^(K+1)) / (1 - a) tokens per step: 1.11 at a = 0.1, 1.43 at a = 0.3 (K = 4). The
verdict per category (`verdict`) reads it so: n-gram drafting likely pays at p_4 >= 0.3 (>= 1.4
tokens per step for a drafter that costs next to nothing), is unlikely to at p_4 < 0.1 (its
verifications cost more than 1.1 tokens per step gain under load), and is marginal between.

A request whose stream carried fewer ids than its output tokens (llama-server sends no id for a
token that ends inside a UTF-8 character: the next chunk's text holds it, its id only the next
token's) is scored on the ids it has and counted in requests_missing_ids.

Everything runs after the run, vectorised per request (n-grams numbered and counted with numpy),
never on the read path. Only first turns are scored: later turns' prompts
hold earlier replies, not the workload's prompt.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np

from loadgen.records import RequestRecord

from .speculative import request_acceptance_length

__all__ = ["ngram_precisions", "overlap_score", "overlap_figures", "verdict", "MAX_N", "METHOD", "LIKELY", "UNLIKELY",
           "NOT_ASKED"]

MAX_N = 4
#: the verdict's thresholds on p_4 (see the module's docstring)
LIKELY, UNLIKELY = 0.3, 0.1
#: the draft length the verdict's tokens-per-step estimate assumes
VERDICT_DRAFT_LENGTH = 4
METHOD = ("BLEU-4 style on token ids: geometric mean of the clipped n-gram precisions p1..p4 of the output "
          "against its prompt, no brevity penalty; ngram_share is p4 (the output 4-grams the prompt holds)")
NOT_ASKED = "not asked: the run had no --output-ids"


def ngram_precisions(output: np.ndarray, prompt: np.ndarray, max_n: int = MAX_N) -> list[float] | None:
    """The clipped precisions p_1..p_max_n of `output` against `prompt`; None where the output has
    fewer than max_n ids (no max_n-gram to score).

    output [1, 2, 3, 1], prompt [1, 2, 9]: p1 = 2/4 (the second 1 clipped to the prompt's one),
    p2 = 1/3 (only 1 2 is in the prompt), p3 = p4 = 0.

    Exact and vectorised: prompt and output are joined around a separator; each n-gram gets a dense
    number from its (n-1)-gram's and its last id's (np.unique's inverse, so numbers stay below the
    joined length and their products fit int64); n-grams that hold the separator are never counted."""
    output = np.asarray(output, dtype=np.int64)
    prompt = np.asarray(prompt, dtype=np.int64)
    if output.size < max_n:
        return None
    joined = np.concatenate([prompt, [-1], output])  # -1: no token id, so no n-gram spans the seam
    unigram = np.unique(joined, return_inverse=True)[1].astype(np.int64)
    gram, base = unigram, int(unigram.max()) + 1
    precisions = []
    for n in range(1, max_n + 1):
        if n > 1:  # n-gram i = (n-1)-gram i followed by id i+n-1
            gram = np.unique(gram[:-1] * base + unigram[n - 1:], return_inverse=True)[1].astype(np.int64)
        kinds = int(gram.max()) + 1
        in_prompt = np.bincount(gram[:max(prompt.size - n + 1, 0)], minlength=kinds)
        in_output = np.bincount(gram[prompt.size + 1:], minlength=kinds)
        precisions.append(float(np.minimum(in_output, in_prompt).sum()) / (output.size - n + 1))
    return precisions


def overlap_score(precisions: Sequence[float]) -> float:
    """The geometric mean of the precisions; 0 where any is 0 (BLEU without smoothing)."""
    if min(precisions) <= 0:
        return 0.0
    return float(np.exp(np.mean(np.log(precisions))))


def verdict(ngram_share: float) -> str:
    """Whether prompt-lookup (n-gram) drafting is likely to pay on outputs whose 4-grams the prompt
    holds at this share (the rule and its basis: the module's docstring)."""
    a = ngram_share
    al = (1 - a ** (VERDICT_DRAFT_LENGTH + 1)) / (1 - a) if a < 1 else VERDICT_DRAFT_LENGTH + 1.0
    estimate = f"{a:.0%} of output 4-grams are in the prompt: ~{al:.2f} tokens per step for a {VERDICT_DRAFT_LENGTH}" \
               "-token n-gram draft"
    if a >= LIKELY:
        return f"n-gram drafting likely pays ({estimate})"
    if a < UNLIKELY:
        return f"n-gram drafting unlikely to pay ({estimate})"
    return f"n-gram drafting marginal ({estimate})"


def _correlation(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson's r; None with fewer than 3 pairs or where either side does not vary."""
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def _quartile_bins(overlap: np.ndarray, al: np.ndarray) -> list[dict]:
    """Mean per-request AL in the quartiles of overlap (fewer bins where quartile edges coincide:
    many requests with overlap 0 share one bin)."""
    edges = np.unique(np.quantile(overlap, [0.0, 0.25, 0.5, 0.75, 1.0]))
    if edges.size == 1:
        return [{"overlap_low": float(edges[0]), "overlap_high": float(edges[0]), "requests": int(al.size),
                 "mean_acceptance_length": float(al.mean())}]
    index = np.clip(np.searchsorted(edges, overlap, side="right") - 1, 0, edges.size - 2)
    bins = []
    for b in range(edges.size - 1):
        members = al[index == b]
        if members.size:
            bins.append({"overlap_low": float(edges[b]), "overlap_high": float(edges[b + 1]),
                         "requests": int(members.size), "mean_acceptance_length": float(members.mean())})
    return bins


def _category(rows: list[tuple[list[float], float, float | None]]) -> dict:
    """One category's figures from (precisions, overlap, request AL) per scored request."""
    precisions = np.array([p for p, _, _ in rows])
    shares = precisions[:, MAX_N - 1]
    paired = [(o, al) for _, o, al in rows if al is not None]
    overlap = np.array([o for o, _ in paired])
    al = np.array([a for _, a in paired])
    slope = (float(np.polyfit(overlap, al, 1)[0]) if overlap.size >= 3 and np.ptp(overlap) > 0 else None)
    share = float(shares.mean())
    return {"requests": len(rows), "mean_overlap": float(np.mean([o for _, o, _ in rows])),
            "ngram_share": share, "precisions": [float(v) for v in precisions.mean(axis=0)],
            "al_correlation": _correlation(overlap, al), "al_slope": slope,
            "al_by_overlap": _quartile_bins(overlap, al) if overlap.size else [], "verdict": verdict(share)}


def overlap_figures(records: Sequence[RequestRecord], prompt_ids: Mapping[str, np.ndarray], *, asked: bool,
                    engine_way: dict | None, engine_note: str) -> dict:
    """The report's overlap section: per category, the mean overlap and p_4, their correlation with
    per-request AL (tokens per step after the first chunk), AL by overlap quartile, the slope of AL
    against overlap and the verdict. Where nothing could be scored, `available` is false and
    `reason` says why: not asked (`asked`), the engine has no way (`engine_way` None: the request
    fields it would take), or none of the requests came back with ids.

    records: the measured ones; prompt_ids: workload prompt_id -> the prompt's token ids."""
    section: dict = {"available": False, "reason": None, "method": METHOD, "requests": 0, "requests_missing_ids": 0,
                     "categories": {}}
    if not asked:
        return section | {"reason": NOT_ASKED}
    if engine_way is None:
        return section | {"reason": f"the engine gives none: {engine_note}"}
    rows: dict[str, list[tuple[list[float], float, float | None]]] = defaultdict(list)
    with_ids = missing = 0
    for r in records:
        if not r.ok or r.turn != 0 or not r.output_ids:
            continue
        with_ids += 1
        prompt = prompt_ids.get(r.prompt_id)
        precisions = None if prompt is None else ngram_precisions(np.frombuffer(r.output_ids, dtype=np.int32), prompt)
        if precisions is not None:
            rows[r.category].append((precisions, overlap_score(precisions), request_acceptance_length(r.chunk_tokens)))
            missing += len(r.output_ids) < r.output_tokens
    if not with_ids:
        return section | {"reason": f"asked, but no request came back with output ids ({engine_note})"}
    if not rows:
        return section | {"reason": f"{with_ids} request(s) came back with ids, none with a known prompt and at "
                                    f"least {MAX_N} output tokens"}
    return section | {"available": True, "requests": sum(len(v) for v in rows.values()),
                      "requests_missing_ids": missing,
                      "categories": {name: _category(v) for name, v in sorted(rows.items())}}
