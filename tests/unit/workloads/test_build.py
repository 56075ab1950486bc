import numpy as np
import pytest

from loadgen.errors import UsageError
from loadgen.workloads import BuildOptions, Conversation, build_prompts, load_tokenizer

ROWS = [Conversation("r1", "a", ("hello world the cat sat on the mat",)),
        Conversation("r2", "b", ("why is the sky blue tell me more about it",)),
        Conversation("r3", "a", ("write a short story and then tell me what you are",), sub_category="s")]


@pytest.fixture(scope="module")
def llama3(tokenizers_dir):
    return load_tokenizer(tokenizers_dir["llama3"])


def test_templated_prompts_equal_chat_ids(llama3):
    prompts = build_prompts(ROWS, llama3, BuildOptions(system_prompt="you are helpful"))
    for row, prompt in zip(ROWS, prompts):
        expected = llama3.chat_ids([{"role": "system", "content": "you are helpful"},
                                    {"role": "user", "content": row.turns[0]}])
        assert prompt.token_ids.tolist() == expected and prompt.token_ids.dtype == np.int32
    assert prompts[2].sub_category == "s"


def test_raw_completion_without_template(llama3):
    (prompt,) = build_prompts(ROWS[:1], llama3, BuildOptions(chat_template=False))
    assert prompt.token_ids.tolist() == llama3.encode(ROWS[0].turns[0])


@pytest.mark.parametrize("isl", [12, 24, 40])
def test_exact_isl_cuts_or_pads_with_the_datasets_own_text(llama3, isl):
    prompts = build_prompts(ROWS, llama3, BuildOptions(isl=isl))
    assert {p.token_ids.size for p in prompts} == {isl}
    dataset_ids = {t for row in ROWS for t in llama3.encode(row.turns[0])} | set(llama3.encode("\n\n"))
    template_ids = set(llama3.chat_ids([{"role": "user", "content": ""}]))
    for row, prompt in zip(ROWS, prompts):
        ids = prompt.token_ids.tolist()
        assert set(ids) <= dataset_ids | template_ids  # natural text only, never random ids
        text = llama3.decode(ids)
        assert text.startswith("<|begin_of_text|>") and text.rstrip().endswith("<|end_header_id|>")
        first_words = row.turns[0].split()[:2]
        assert " ".join(first_words) in text  # the row's own text comes first
    again = build_prompts(ROWS, llama3, BuildOptions(isl=isl))
    assert all(np.array_equal(a.token_ids, b.token_ids) for a, b in zip(prompts, again))  # deterministic


def test_isl_beyond_the_datasets_text_is_refused(llama3):
    with pytest.raises(UsageError, match="holds only"):
        build_prompts(ROWS, llama3, BuildOptions(isl=500))


def test_isl_shorter_than_the_template_is_refused(llama3):
    with pytest.raises(UsageError, match="shorter than the chat template"):
        build_prompts(ROWS, llama3, BuildOptions(isl=3))


def test_multi_turn_rows_keep_their_followups(llama3):
    (prompt,) = build_prompts([Conversation("m", "c", ("hello world", "tell me more"))], llama3, BuildOptions())
    assert prompt.followups == ("tell me more",)
    assert prompt.messages == ({"role": "user", "content": "hello world"},)


def test_pretokenized_rows_pass_through_and_text_needs_a_tokenizer():
    (prompt,) = build_prompts([Conversation("t", "c", prompt_token_ids=(5, 6, 7))], None, BuildOptions())
    assert prompt.token_ids.tolist() == [5, 6, 7]
    with pytest.raises(UsageError, match="--tokenizer"):
        build_prompts(ROWS, None, BuildOptions())


def test_prompts_sent_as_text_keep_their_messages(llama3):
    prompts = build_prompts(ROWS, llama3, BuildOptions(system_prompt="be brief", keep_messages=True))
    for row, prompt in zip(ROWS, prompts):
        assert prompt.messages == ({"role": "system", "content": "be brief"}, {"role": "user", "content": row.turns[0]})
        assert prompt.token_ids.tolist() == llama3.chat_ids(list(prompt.messages))  # parity's local count
    assert BuildOptions(keep_messages=True).key() != BuildOptions().key()
    assert "keep_messages" not in BuildOptions().key()  # the caches of id workloads keep their keys


def test_isl_sent_as_text_is_the_cut_content_as_a_message(llama3):
    prompts = build_prompts(ROWS, llama3, BuildOptions(isl=24, keep_messages=True))
    for prompt in prompts:
        (message,) = prompt.messages
        assert message["role"] == "user" and message["content"]
        assert prompt.token_ids.tolist() == llama3.chat_ids([message])
        assert abs(prompt.token_ids.size - 24) <= 2  # decoding the cut ids and encoding them again


def test_rows_of_token_ids_cannot_be_sent_as_text(llama3):
    rows = [Conversation("t", "a", prompt_token_ids=(1, 2, 3))]
    with pytest.raises(UsageError, match="prompt_token_ids"):
        build_prompts(rows, llama3, BuildOptions(keep_messages=True))
