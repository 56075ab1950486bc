"""Tokenizers for tests, all inside the repo: the shipped Phi-3 one, and tiny ones built here in the
shapes of other families (Llama-3: template writes BOS; ChatML: no BOS; none: no template)."""

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from loadgen.workloads.tokenizer import BUILTIN_TOKENIZER

WORDS = ["hello", "world", "the", "a", "cat", "sat", "on", "mat", "why", "is", "sky", "blue", "tell", "me", "more",
         "about", "it", "and", "then", "what", "you", "are", "helpful", "assistant", "story", "short", "write", "x"]

LLAMA3_TEMPLATE = (
    "{{- bos_token }}{%- for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{%- endfor %}{%- if add_generation_prompt %}"
    "<|start_header_id|>assistant<|end_header_id|>\n\n{%- endif %}")
CHATML_TEMPLATE = (
    "{%- for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{%- endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}")


def _make(folder: Path, specials: list[str], config: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {tok: i for i, tok in enumerate(["[UNK]", *specials, *WORDS, "\n", ":", "."])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit()])
    tok.add_special_tokens(specials)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast",
                                                               "unk_token": "[UNK]", **config}))
    return folder


@pytest.fixture(scope="session")
def tokenizers_dir(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tokenizers")
    return {
        "phi3": BUILTIN_TOKENIZER,
        "llama3": _make(root / "llama3",
                        ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
                        {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "add_bos_token": True,
                         "chat_template": LLAMA3_TEMPLATE}),
        "chatml": _make(root / "chatml", ["<|im_start|>", "<|im_end|>", "<|endoftext|>"],
                        {"eos_token": "<|im_end|>", "chat_template": CHATML_TEMPLATE}),
        "plain": _make(root / "plain", ["<|endoftext|>"], {"eos_token": "<|endoftext|>"}),
    }
