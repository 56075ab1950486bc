"""The emulator's chat helpers: a chat request's prompt tokens, and a chunk's split into reasoning
and answer. (The bad values of the chat options are in test_cost.py's emulate option errors.)"""

from __future__ import annotations

import pytest

from loadgen.emulator.engine import chat_prompt_token_count, split_reasoning


def test_chat_prompt_tokens_are_the_words_of_every_message():
    messages = [{"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "one two three"}, {"type": "image_url"}]},
                {"role": "assistant", "content": None}]
    assert chat_prompt_token_count(messages) == 5
    assert chat_prompt_token_count([{"role": "user", "content": ""}]) == 1  # at least one, as for text
    assert chat_prompt_token_count([]) is None
    assert chat_prompt_token_count("hello") is None
    assert chat_prompt_token_count(["hello"]) is None


@pytest.mark.parametrize(("completion_tokens", "expected"), [
    (3, (" a b c", "")),        # tokens 1-3: all reasoning
    (5, (" c", " d e")),        # tokens 3-5: the boundary after token 3
    (7, ("", " e f g")),        # tokens 5-7: all answer
])
def test_a_chunk_splits_at_the_reasoning_boundary(completion_tokens, expected):
    texts = {3: [" a", " b", " c"], 5: [" c", " d", " e"], 7: [" e", " f", " g"]}[completion_tokens]
    assert split_reasoning(texts, completion_tokens, 3) == expected
