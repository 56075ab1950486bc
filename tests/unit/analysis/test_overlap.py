"""Prompt-output overlap (analysis/overlap.py) on hand-built id lists and records: the arithmetic of
the clipped n-gram precisions, the per-category figures against AL, and the reasons given where
nothing could be scored."""

from array import array

import numpy as np
import pytest

from loadgen.analysis.overlap import NOT_ASKED, ngram_precisions, overlap_figures, overlap_score, verdict
from tests.records import streamed_record


def test_precisions_are_clipped_shares_of_output_ngrams_found_in_the_prompt():
    # unigrams 1 1 2 3 against 1 2 9: the second 1 is clipped to the prompt's one -> 2/4; bigrams
    # (1 2), (2 3), (3 1): only 1 2 is in the prompt -> 1/3; no trigram or 4-gram is
    assert ngram_precisions(np.array([1, 2, 3, 1]), np.array([1, 2, 9])) == pytest.approx([0.5, 1 / 3, 0, 0])
    assert ngram_precisions(np.array([7, 7, 7, 7]), np.array([7, 3, 7])) == pytest.approx([0.5, 0, 0, 0])
    assert ngram_precisions(np.array([2, 3, 4, 5]), np.arange(10)) == [1.0, 1.0, 1.0, 1.0]


def test_no_ngram_spans_the_seam_between_prompt_and_output():
    # the prompt ends 1 2 and the output starts 3 4: the joined 1 2 3 4 must not count as a prompt 4-gram
    assert ngram_precisions(np.array([3, 4, 5, 6]), np.array([1, 2])) == [0.0, 0.0, 0.0, 0.0]
    assert ngram_precisions(np.array([1, 2, 3]), np.array([1, 2, 3])) is None  # no 4-gram to score


def test_overlap_is_the_geometric_mean_and_zero_where_a_precision_is():
    assert overlap_score([1.0, 0.5, 0.25, 0.125]) == pytest.approx((1 * 0.5 * 0.25 * 0.125) ** 0.25)
    assert overlap_score([0.9, 0.5, 0.2, 0.0]) == 0.0


@pytest.mark.parametrize("share, words", [(0.05, "unlikely to pay"), (0.2, "marginal"), (0.35, "likely pays")])
def test_the_verdict_reads_the_4gram_share(share, words):
    assert verdict(share).startswith(f"n-gram drafting {words}")


def _with_ids(request_id: int, tokens: list[int], ids: list[int], *, category: str, prompt_id: str):
    record = streamed_record(request_id, tokens, scheduled_ns=request_id * 10**9, category=category)
    record.prompt_id, record.output_ids = prompt_id, array("i", ids)
    return record


def test_per_category_overlap_follows_al_where_requests_copy_their_prompt():
    """'copy' requests copy the first `c` of 8 segments of 8 ids from their prompt and accept more the
    more they copy (AL 1 + c / 2 per step); 'fresh' requests copy nothing, at AL 2."""
    rng = np.random.default_rng(0)
    prompts = {f"p{i}": rng.integers(1000, 30000, 200) for i in range(8)}
    records = []
    for i in range(8):
        prompt, c = prompts[f"p{i}"], i % 4 + 1
        copied = [int(t) for s in range(c) for t in prompt[16 * s:16 * s + 8]]
        ids = copied + [int(t) for t in rng.integers(40000, 50000, 64 - len(copied))]
        records.append(_with_ids(i, [1] + [2 + c // 2] * 8, ids, category="copy", prompt_id=f"p{i}"))
        records.append(_with_ids(100 + i, [1, 2, 2, 2], [int(t) for t in rng.integers(40000, 50000, 64)],
                                 category="fresh", prompt_id=f"p{i}"))
    figures = overlap_figures(records, prompts, asked=True, engine_way={"return_token_ids": True}, engine_note="")
    assert figures["available"] and figures["requests"] == 16
    copy, fresh = figures["categories"]["copy"], figures["categories"]["fresh"]
    # 5 of each copied segment's 8 4-grams lie inside it; 61 4-grams per output; c = 1..4, twice each
    assert copy["ngram_share"] == pytest.approx(np.mean([5 * (i % 4 + 1) / 61 for i in range(8)]))
    assert copy["al_correlation"] > 0.9 and copy["al_slope"] > 0
    assert [b["requests"] for b in copy["al_by_overlap"]] == [2, 2, 2, 2]  # one copy level per quartile
    assert copy["al_by_overlap"][0]["mean_acceptance_length"] < copy["al_by_overlap"][-1]["mean_acceptance_length"]
    assert fresh["ngram_share"] == 0.0 and fresh["mean_overlap"] == 0.0
    assert fresh["al_correlation"] is None  # no spread in overlap: no correlation, rather than a made-up 0
    assert [b["requests"] for b in fresh["al_by_overlap"]] == [8]  # quartile edges that coincide make one bin
    assert fresh["verdict"].startswith("n-gram drafting unlikely")


def test_where_nothing_was_scored_the_section_says_why_and_holds_no_figures():
    record = _with_ids(1, [1, 2, 2], [], category="c", prompt_id="p")
    asked = {"asked": True, "engine_way": {"verbose": True}, "engine_note": "llama.cpp: verbose"}
    for figures, reason in (
            (overlap_figures([record], {}, asked=False, engine_way=None, engine_note=""), NOT_ASKED),
            (overlap_figures([record], {}, asked=True, engine_way=None, engine_note="a plain server has none"),
             "the engine gives none: a plain server has none"),
            (overlap_figures([record], {"p": np.arange(9)}, **asked),
             "asked, but no request came back with output ids (llama.cpp: verbose)")):
        assert figures["reason"] == reason
        assert not figures["available"] and figures["categories"] == {} and figures["requests"] == 0
    record.output_ids = array("i", [1, 2, 3, 4])
    unknown = overlap_figures([record], {"other": np.arange(9)}, **asked)
    assert not unknown["available"] and "none with a known prompt" in unknown["reason"]
