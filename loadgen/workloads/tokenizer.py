"""The target model's tokenizer and chat template, applied here so every engine gets the same ids."""

from __future__ import annotations

import bisect
import hashlib
import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from loadgen.errors import UsageError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

__all__ = ["ChatTokenizer", "load_tokenizer", "tokenizer_dir", "tokenizer_fingerprint", "BUILTIN_TOKENIZER"]

#: the MIT-licensed Phi-3 tokenizer shipped with loadgen (see assets/phi3/PROVENANCE.md)
BUILTIN_TOKENIZER = Path(__file__).parent / "assets" / "phi3"

Message = dict


@dataclass
class ChatTokenizer:
    """A Hugging Face tokenizer with the two operations a workload needs.

    `fingerprint` changes whenever the vocabulary, special tokens or chat template change, so a
    cached workload prepared with another tokenizer is never reused.
    """

    name: str
    fingerprint: str
    _tok: PreTrainedTokenizerFast

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self._tok, "chat_template", None))

    @property
    def bos_token_id(self) -> int | None:
        return self._tok.bos_token_id

    def as_text_prompt(self, text: str) -> str:
        """A rendered prompt as a server is sent it as text: without the BOS its chat template
        writes, since servers add their own BOS to a text prompt, which would make two:
        llama-server tokenizes it with add_special and parse_special on (tools/server/server-context.cpp,
        tokenize_input_prompts(..., true, true, ...)), vLLM 0.32's /v1/completions has
        add_special_tokens default True (entrypoints/openai/completion/protocol.py)."""
        bos = self._tok.bos_token
        return text[len(bos):] if isinstance(bos, str) and bos and text.startswith(bos) else text

    def encode(self, text: str) -> list[int]:
        """Plain text to ids, adding no special tokens."""
        return self._tok.encode(text, add_special_tokens=False)

    def encode_many(self, texts: Sequence[str]) -> list[list[int]]:
        """Batch version of encode, on all cores in the Rust tokenizer (its offset-free variant
        where it has one: ~25% faster, and offsets are not needed here)."""
        if not texts:
            return []
        backend = self._tok.backend_tokenizer
        batch = getattr(backend, "encode_batch_fast", backend.encode_batch)
        return [e.ids for e in batch(list(texts), add_special_tokens=False)]

    def tokens_ending_in(self, pieces: Sequence[str]) -> list[int]:
        """The pieces (a reply's streamed deltas, in order) joined and tokenized once: how many of
        its tokens end in each piece. A token split over pieces counts in the one its text ends in,
        so the counts sum to the reply's tokens; what a server counted may still differ (special
        tokens it does not stream, a different merge at a boundary), hence an estimate."""
        ends = list(itertools.accumulate(len(p) for p in pieces))
        encoding = self._tok.backend_tokenizer.encode("".join(pieces), add_special_tokens=False)
        counts = [0] * len(pieces)
        for _, end in encoding.offsets:
            if end > 0:
                counts[min(bisect.bisect_left(ends, end), len(pieces) - 1)] += 1
        return counts

    def decode(self, ids: Sequence[int]) -> str:
        return cast(str, self._tok.decode(list(ids)))  # one id list decodes to one str (a batch, to a list)

    def render(self, messages: Sequence[Message]) -> str:
        """The chat template applied, ending in the assistant's turn (add_generation_prompt)."""
        if not self.has_chat_template:
            raise UsageError(f"tokenizer {self.name} has no chat template; pass --no-chat-template to send "
                             "raw text, or a --tokenizer that has one")
        try:
            # tokenize=False: the rendered text (transformers types every form the call can return)
            text = cast(str, self._tok.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True))
        except Exception as exc:  # jinja raises anything; it is a template/messages mismatch
            raise UsageError(f"the chat template of {self.name} rejected the conversation: {exc}") from None
        for message in messages:
            if message["role"] == "system" and message["content"] not in text:
                raise UsageError(f"the chat template of {self.name} drops system messages; "
                                 "leave out --system-prompt for this model")
        return text

    def chat_ids(self, messages: Sequence[Message]) -> list[int]:
        """Template applied, then encoded WITHOUT adding special tokens: templates that write the
        BOS themselves (Llama 3, Phi-3) would otherwise get two."""
        return self.encode(self.render(messages))


#: the files that define a tokenizer's behaviour (vocabulary, merges, specials, chat template)
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                    "chat_template.json", "tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json")


def tokenizer_dir(spec: str | Path | None) -> Path:
    """The local folder of a tokenizer: given as a folder, fetched by Hugging Face id (cached by the
    hub client, so later runs work offline), or the built-in one for None."""
    if spec is None:
        return BUILTIN_TOKENIZER
    path = Path(spec)
    if path.is_dir():
        return path
    if path.exists() or str(spec).startswith((".", "/", "~")) or str(spec).count("/") > 1:
        raise UsageError(f"tokenizer {str(spec)!r} not found: give a folder with tokenizer.json "
                         "or a Hugging Face model id")
    try:
        from huggingface_hub import snapshot_download
        return Path(snapshot_download(str(spec), allow_patterns=list(_TOKENIZER_FILES)))
    except Exception as exc:  # offline, unknown repo, gated model: one line either way
        raise UsageError(f"cannot get tokenizer {str(spec)!r} from the Hugging Face hub "
                         f"({type(exc).__name__}); give a local folder with tokenizer.json instead") from None


def tokenizer_fingerprint(folder: Path) -> str:
    """sha256 over the tokenizer's defining files: cheap (no transformers import), and it changes
    whenever the vocabulary, special tokens or chat template do."""
    h = hashlib.sha256()
    found = False
    for name in _TOKENIZER_FILES:
        file = folder / name
        if file.is_file():
            found = True
            h.update(name.encode() + b"\0" + file.read_bytes())
    if not found:
        raise UsageError(f"{folder} holds no tokenizer files (tokenizer.json, tokenizer_config.json, ...)")
    return h.hexdigest()[:16]


def load_tokenizer(spec: str | Path | None) -> ChatTokenizer:
    """A local folder (tokenizer.json + tokenizer_config.json) or a Hugging Face id; None = built-in."""
    folder = tokenizer_dir(spec)
    fingerprint = tokenizer_fingerprint(folder)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # no "PyTorch was not found" banner
    from transformers import AutoTokenizer

    name = "builtin:phi3" if spec is None else str(spec)
    try:
        tok = AutoTokenizer.from_pretrained(str(folder))
    except Exception as exc:  # OSError, ValueError, parse errors: all mean "cannot load this"
        raise UsageError(f"cannot load tokenizer {name!r}: {str(exc).splitlines()[0][:160]}") from None
    # AutoTokenizer loads the fast (Rust-backed) class by default, the one encode_many relies on
    return ChatTokenizer(name, fingerprint, cast("PreTrainedTokenizerFast", tok))
