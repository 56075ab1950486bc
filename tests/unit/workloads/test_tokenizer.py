import shutil

import pytest

from loadgen.errors import UsageError
from loadgen.workloads import load_tokenizer
from loadgen.workloads.tokenizer import tokenizer_fingerprint

USER = [{"role": "user", "content": "why is the sky blue"}]


def test_builtin_phi3_has_exactly_one_bos():
    tok = load_tokenizer(None)
    ids = tok.chat_ids(USER)
    assert ids[0] == tok.bos_token_id == 1 and ids.count(1) == 1
    user, assistant = tok.encode("<|user|>"), tok.encode("<|assistant|>")
    assert ids[1:2] == user and assistant[0] in ids[-3:]  # ends on the assistant's turn


def test_phi3_template_drops_system_messages_so_they_are_refused():
    with pytest.raises(UsageError, match="drops system messages"):
        load_tokenizer(None).chat_ids([{"role": "system", "content": "be brief"}, *USER])


def test_llama3_family_template_writes_bos_once(tokenizers_dir):
    tok = load_tokenizer(tokenizers_dir["llama3"])
    ids = tok.chat_ids([{"role": "system", "content": "you are helpful"}, *USER])
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    text = tok.decode(ids)
    assert "you are helpful" in text and text.rstrip().endswith("<|end_header_id|>")


def test_chatml_family_has_no_bos(tokenizers_dir):
    tok = load_tokenizer(tokenizers_dir["chatml"])
    ids = tok.chat_ids(USER)
    assert tok.bos_token_id is None
    assert tok.decode(ids[:1]) == "<|im_start|>"


def test_tokenizer_without_template(tokenizers_dir):
    tok = load_tokenizer(tokenizers_dir["plain"])
    assert not tok.has_chat_template
    with pytest.raises(UsageError, match="no chat template.*--no-chat-template"):
        tok.chat_ids(USER)
    assert tok.encode("hello world") == tok.encode_many(["hello world"])[0]


def test_missing_tokenizer_is_one_clear_error(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        load_tokenizer(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match="holds no tokenizer files"):
        load_tokenizer(empty)


def test_fingerprint_follows_the_chat_template(tmp_path):
    copy = shutil.copytree(load_tokenizer(None)._tok.name_or_path, tmp_path / "phi3")
    before = tokenizer_fingerprint(copy)
    config = copy / "tokenizer_config.json"
    config.write_text(config.read_text().replace("<|assistant|>", "<|assistant|> "))
    assert tokenizer_fingerprint(copy) != before


def test_a_text_prompt_leaves_out_the_bos_its_template_writes(tokenizers_dir):
    """Servers add their own BOS to a text prompt: the template's would make two."""
    messages = [{"role": "user", "content": "hello world"}]
    llama3 = load_tokenizer(tokenizers_dir["llama3"])
    rendered = llama3.render(messages)
    assert rendered.startswith("<|begin_of_text|>")
    assert llama3.as_text_prompt(rendered) == rendered.removeprefix("<|begin_of_text|>")
    chatml = load_tokenizer(tokenizers_dir["chatml"])  # no BOS in its template: the text as rendered
    assert chatml.as_text_prompt(chatml.render(messages)) == chatml.render(messages)


def test_tokens_ending_in_each_piece_add_up_to_the_whole(tokenizers_dir):
    tok = load_tokenizer(None)
    pieces = ["The sky", " is bl", "ue", "", " because of Rayleigh scattering."]
    counts = tok.tokens_ending_in(pieces)
    assert len(counts) == len(pieces) and sum(counts) == len(tok.encode("".join(pieces)))
    assert counts[3] == 0  # an empty piece ends no token
