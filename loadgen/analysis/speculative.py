"""Acceptance statistics from tokens per step, as the client saw them.

A step is a token-carrying chunk after the first: the first chunk is the prefill's single token,
so it says nothing about drafting. With one chunk per engine step (stream interval 1 and a
client that keeps up) tokens per step equal the step's acceptance length.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from loadgen.engines import ServerAcceptance
from loadgen.records import RequestRecord

__all__ = ["step_histogram", "mean_from_histogram", "conditional_acceptance", "request_acceptance_length",
           "draft_coverage", "cross_check", "AGREEMENT_TOLERANCE", "request_decode_steps", "per_request_check"]


def step_histogram(chunk_token_lists: Iterable[Sequence[int]]) -> dict[int, int]:
    """Steps per token count over all requests, first chunk of each excluded.

    [[1, 3, 2], [1, 3]] -> {3: 2, 2: 1}.
    """
    hist: Counter[int] = Counter()
    for tokens in chunk_token_lists:
        hist.update(tokens[1:])
    return dict(sorted(hist.items()))


def mean_from_histogram(hist: Mapping[int, int]) -> float | None:
    """Mean tokens per step: {3: 2, 2: 1} -> 8 / 3."""
    steps = sum(hist.values())
    return sum(k * n for k, n in hist.items()) / steps if steps else None


def conditional_acceptance(hist: Mapping[int, int]) -> dict[int, float]:
    """N(steps with >= k tokens) / N(steps with >= k-1 tokens) for k = 1 .. max.

    {1: 2, 2: 1, 3: 1} -> {1: 1.0, 2: 0.5, 3: 0.5}: k=1 is 1.0 by definition, and k is the
    chance that draft position k-1 was accepted given the earlier ones were.
    """
    if not hist:
        return {}
    top = max(hist)
    at_least = {k: sum(n for t, n in hist.items() if t >= k) for k in range(0, top + 1)}
    return {k: at_least[k] / at_least[k - 1] for k in range(1, top + 1) if at_least[k - 1]}


def request_acceptance_length(tokens: Sequence[int]) -> float | None:
    """One request's mean tokens per step: [1, 3, 4, 2] -> 3.0; None with no step after the first."""
    steps = tokens[1:]
    return sum(steps) / len(steps) if len(steps) else None


#: client and server AL further apart than this are flagged
AGREEMENT_TOLERANCE = 0.02


def draft_coverage(hist: Mapping[int, int], server: ServerAcceptance | None) -> dict | None:
    """The share of the client's decode steps that drafted, from an engine whose drafts counter
    counts drafted decode steps exactly (EngineAdapter.drafts_are_decode_steps).

    The server's AL covers drafted steps only: AL_s = (D + accepted) / D over D drafts. The client's
    covers every decode step (each chunk after the prefill's): AL_c = tokens / steps. A step that
    drafted nothing (an n-gram drafter with nothing to match yet, a request's last token) carries one
    token, so with U = steps - D undrafted steps

        tokens = U + D * AL_s - discarded,   AL_c = (U + D * AL_s - discarded) / (U + D)

    where `discarded` counts accepted draft tokens the server counted but did not stream (vLLM counts
    those max_tokens then cuts off; also steps of requests that failed or were cancelled, whose
    tokens are not in `hist`). The predicted AL is the relation without discards,
    1 + coverage * (AL_s - 1).

    `hist` is the client's step histogram (successful requests, first chunk excluded). None where
    the server's figures are not an exact count, or where it drafted more steps than the client saw
    (other traffic on the server, or chunks merging steps): the relation does not hold there.
    discarded_accepted_tokens is None where negative (the stream delivered more than the counters
    account for).

    {1: 4, 4: 6} (28 tokens over 10 steps, AL_c 2.8) against 6 drafts with 21 accepted (AL_s 4.5):
    4 undrafted steps, coverage 0.6, predicted AL (4 + 6 * 4.5) / 10 = 3.1, 6 + 21 - (28 - 4) = 3
    accepted tokens discarded.
    """
    if (server is None or not server.exact or server.drafts is None or server.accepted_tokens is None
            or server.acceptance_length is None):
        return None
    steps = sum(hist.values())
    drafted = round(server.drafts)
    if not steps or drafted > steps:
        return None
    tokens = sum(k * n for k, n in hist.items())
    undrafted = steps - drafted
    discarded = round(drafted + server.accepted_tokens - (tokens - undrafted))
    return {"decode_steps": steps, "decode_tokens": tokens, "drafted_steps": drafted, "undrafted_steps": undrafted,
            "coverage": drafted / steps,
            "predicted_client_acceptance_length": (undrafted + drafted * server.acceptance_length) / steps,
            "discarded_accepted_tokens": discarded if discarded >= 0 else None}


def cross_check(client_al: float | None, server: ServerAcceptance | None, authoritative: tuple[str, str],
                read_lag_p99_s: float | None, coverage: dict | None = None) -> dict:
    """Client AL (tokens per chunk) against the server's, with the likely cause of a disagreement.

    Chunks that merge steps (stream interval > 1, an engine merging under load, reads that caught
    several bursts) raise the client's figure; other traffic on the server, or a step split over
    two reads, moves the server's or lowers the client's. Where the draft coverage
    (draft_coverage) predicts the client's AL within the tolerance, the undrafted steps are the
    whole gap: that one measured cause replaces the guessed ones.
    """
    server_al = server.acceptance_length if server else None
    likely_causes: list[str] = []
    out: dict[str, object] = {
        "client_acceptance_length": client_al, "server_acceptance_length": server_al,
        "server_source": server.source if server else None, "relative_difference": None, "flagged": False,
        "likely_causes": likely_causes, "authoritative": authoritative[0], "authoritative_reason": authoritative[1]}
    if client_al is None or server is None or server_al is None:
        return out
    diff = client_al / server_al - 1.0
    out["relative_difference"] = diff
    if abs(diff) <= AGREEMENT_TOLERANCE:
        return out
    out["flagged"] = True
    predicted = coverage["predicted_client_acceptance_length"] if coverage else None
    if coverage and predicted and abs(client_al / predicted - 1.0) <= AGREEMENT_TOLERANCE:
        likely_causes.append(f"steps with no draft: {coverage['drafted_steps']} of {coverage['decode_steps']} decode "
                             f"steps drafted (coverage {coverage['coverage']:.1%}), which predicts the client's AL "
                             f"{predicted:.3f} from the server's {server_al:.3f}")
        return out
    if diff > 0:
        likely_causes.append("chunks merge several engine steps (stream interval > 1, or the engine merged steps "
                             "under load)")
        if read_lag_p99_s is not None and read_lag_p99_s > 0.005:
            likely_causes.append(f"the client fell behind (read lag p99 {read_lag_p99_s * 1e3:.1f} ms), so one "
                                 "read caught several steps")
    else:
        likely_causes += ["other traffic on the server during the run (its figures cover all requests)",
                          "a step's tokens split over several chunks or reads",
                          "steps with no draft (a request's first steps, where an n-gram drafter has nothing to "
                          "match yet, and its last tokens, where no draft fits under max_tokens) count in the "
                          "client's AL but not in the server's drafts-only one; short outputs show it most"]
    if not server.exact:
        likely_causes.append("the server figure is a windowed or cumulative average, not the window's count")
    return out


#: the per-request check lists this many of its largest disagreements
LARGEST_DISAGREEMENTS = 5


def request_decode_steps(record: RequestRecord) -> tuple[int, int] | None:
    """One successful request's decode steps (client, engine), where the engine counted them.

    The client's: its chunks after the first (one per engine step at stream interval 1), or on a
    one-chunk-per-token stream the bursts its gaps show (record.stream_steps) less the prefill's.
    The engine's: its own step count where it gives one (record.server_steps), else from its
    accepted drafts: the prefill yields one token and each decode step one plus its accepted
    drafts, so N tokens took N - 1 - accepted decode steps (llama.cpp's timings).

    A 9-token request streamed as [1, 3, 3, 2] with 5 accepted: (3, 3).
    """
    if not record.ok or not record.chunk_tokens:
        return None
    if record.server_steps is not None:
        engine = record.server_steps
    elif record.server_accepted_tokens is not None:
        engine = record.output_tokens - 1 - record.server_accepted_tokens
    else:
        return None
    client = (record.stream_steps if record.stream_steps is not None else len(record.chunk_tokens)) - 1
    return client, engine


def per_request_check(records: Iterable[RequestRecord], given: tuple[bool, str]) -> dict:
    """Each request's decode steps on the stream against the engine's own count for it
    (request_decode_steps): how many agree exactly, the largest disagreements, and the likely causes
    by their direction. `given`: the adapter's per_request_figures; where the engine gives none the
    check says so and counts nothing.

    Fewer steps on the stream than the engine counted: chunks merged steps. More: steps the
    engine's count leaves out (vLLM counts verify steps only, so a step that drafted nothing is the
    client's alone) or a step split over chunks (on llama.cpp a burst with a gap inside it).
    """
    checked = agreeing = 0
    fewer = more = 0
    bursts = False  # a one-chunk-per-token stream disagreed: its steps are bursts told apart by gaps
    undrafted = 0  # more steps on the stream, all of them possibly undrafted: one-token chunks enough
    disagreements: list[dict] = []
    for r in records:
        pair = request_decode_steps(r) if given[0] else None
        if pair is None:
            continue
        checked += 1
        client, engine = pair
        if client == engine:
            agreeing += 1
            continue
        fewer += client < engine
        more += client > engine
        bursts = bursts or r.stream_steps is not None
        if client > engine and r.stream_steps is None:
            undrafted += sum(1 for t in r.chunk_tokens[1:] if t == 1) >= client - engine
        disagreements.append({"request_id": r.request_id, "category": r.category, "client_decode_steps": client,
                              "engine_decode_steps": engine})
    disagreements.sort(key=lambda d: -abs(d["client_decode_steps"] - d["engine_decode_steps"]))
    causes = []
    if fewer:
        causes.append(f"{fewer} request(s) with fewer steps on the stream: chunks merged engine steps (stream "
                      "interval > 1, the engine merging under load, or a client read that caught several steps)"
                      + ("; on one-chunk-per-token streams (llama.cpp) also steps quicker than the gap that "
                         "starts a burst (EngineAdapter.step_gap_ns)" if bursts else ""))
    if more:
        causes.append(f"{more} request(s) with more steps on the stream ({undrafted} with at least as many "
                      "one-token chunks as extra steps): steps the engine's count leaves out (vLLM counts only "
                      "steps that verified a draft; an n-gram drafter drafts nothing until it matches) or one "
                      "step's tokens split over chunks (llama.cpp: a gap inside a burst above the grouping gap)")
    return {"given": given[0], "source": given[1], "requests_checked": checked, "requests_agreeing": agreeing,
            "largest_disagreements": disagreements[:LARGEST_DISAGREEMENTS], "likely_causes": causes}
