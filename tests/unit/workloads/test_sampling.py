"""The run's draw of prompts: every prompt once per pass, categories in proportion, seeded."""

from collections import Counter

import numpy as np

from loadgen.analysis import prompt_send_counts, sampling_figures
from loadgen.workloads import Conversation, Prompt, category_quotas, stratified_order
from loadgen.workloads.sources import distinct_row_ids
from tests.records import streamed_record


def _prompts(sizes: dict[str, int]) -> list[Prompt]:
    return [Prompt(f"{name}-{i}", np.zeros(1, np.int32), name) for name, size in sizes.items() for i in range(size)]


#: lopsided as Spec-Bench is: six categories of 80 prompts, two of 10
SPECBENCH_LIKE = {"mt_bench": 80, "translation": 80, "summarization": 80, "qa": 80, "math_reasoning": 80,
                  "rag": 80, "tiny_a": 10, "tiny_b": 10}


def test_without_a_count_every_prompt_is_sent_exactly_once():
    prompts = _prompts(SPECBENCH_LIKE)
    order = stratified_order(prompts, None, seed=1)
    assert sorted(p.prompt_id for p in order) == sorted(p.prompt_id for p in prompts)


def test_a_count_below_the_size_is_stratified_without_repeats():
    prompts = _prompts(SPECBENCH_LIKE)  # 500 prompts
    order = stratified_order(prompts, 250, seed=1)
    counts = Counter(p.prompt_id for p in order)
    assert len(order) == 250 and max(counts.values()) == 1
    assert Counter(p.category for p in order) == {**dict.fromkeys(SPECBENCH_LIKE, 40), "tiny_a": 5, "tiny_b": 5}


def test_no_prompt_twice_until_every_prompt_was_sent():
    # the case: -n 480 over 10- and 80-prompt categories sent the small ones four times each
    prompts = _prompts({"writing": 80, "coding": 80, "math": 80, "rag": 80, "tiny_a": 10, "tiny_b": 10})  # 340
    order = stratified_order(prompts, 480, seed=0)
    first_pass, second = order[:340], order[340:]
    assert sorted(p.prompt_id for p in first_pass) == sorted(p.prompt_id for p in prompts)
    assert max(Counter(p.prompt_id for p in second).values()) == 1  # the second pass repeats none yet
    assert Counter(p.category for p in second) == {"writing": 33, "coding": 33, "math": 33, "rag": 33,
                                                   "tiny_a": 4, "tiny_b": 4}  # 140 by largest remainder
    assert max(Counter(p.prompt_id for p in order).values()) == 2


def test_every_stretch_of_a_pass_holds_the_categories_in_proportion():
    order = stratified_order(_prompts({"big": 80, "small": 10}), None, seed=2)
    for at in range(0, 90, 9):  # every ninth is "small", give or take one
        assert 0 <= Counter(p.category for p in order[:at + 9])["small"] - (at + 9) // 9 <= 1


def test_the_same_seed_gives_the_same_order():
    prompts = _prompts({"a": 7, "b": 3})
    ids = [p.prompt_id for p in stratified_order(prompts, 13, seed=3)]
    assert ids == [p.prompt_id for p in stratified_order(prompts, 13, seed=3)]
    assert ids != [p.prompt_id for p in stratified_order(prompts, 13, seed=4)]


def test_largest_remainder_quotas():
    assert category_quotas({"a": 80, "b": 10}, 45) == {"a": 40, "b": 5}
    assert category_quotas({"a": 2, "b": 1, "c": 1}, 2) == {"a": 1, "b": 1, "c": 0}  # a tie: by name
    assert category_quotas({"a": 2, "b": 1, "c": 1}, 3) == {"a": 1, "b": 1, "c": 1}  # .75 beats .5
    assert sum(category_quotas({"x": 3, "y": 3, "z": 3}, 7).values()) == 7


def test_ids_repeated_across_categories_are_prefixed():
    rows = [Conversation("1", "math"), Conversation("1", "coding"), Conversation("2", "math"),
            Conversation("2", "math")]
    assert [r.row_id for r in distinct_row_ids(rows)] == ["math/1", "coding/1", "2", "2#2"]
    unique = [Conversation("q81", "writing"), Conversation("q82", "writing")]
    assert distinct_row_ids(unique) is unique  # the dataset's own ids, untouched


def test_the_sampling_section_counts_measured_first_turns():
    def record(pid: str, category: str, *, warmup: bool = False, turn: int = 0):
        r = streamed_record(0, [1, 2], scheduled_ns=0, category=category)
        r.prompt_id, r.warmup, r.turn = pid, warmup, turn
        return r

    records = [record("a1", "a"), record("a1", "a"), record("a1", "a"), record("a2", "a"), record("b1", "b"),
               record("b1", "b", turn=1), record("a2", "a", warmup=True)]
    assert prompt_send_counts(records) == {"a1": 3, "a2": 1, "b1": 1}
    figures = sampling_figures(records, workload_prompts=5)
    assert (figures.requests, figures.distinct_prompts, figures.prompts_sent_more_than_once,
            figures.most_sends_of_one_prompt) == (5, 3, 1, 3)
    assert figures.requests_by_category == {"a": 4, "b": 1}
