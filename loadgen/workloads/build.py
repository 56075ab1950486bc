"""Rows of text -> prompts of token ids: chat template, system prompt, exact input lengths."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from loadgen.errors import UsageError

from .prompt import Conversation, Prompt
from .tokenizer import ChatTokenizer

__all__ = ["BuildOptions", "build_prompts", "render_messages"]

#: content is cut to this many characters per wanted token before encoding: never short in
#: practice (tokens average 2-6 characters), and it keeps 32k-token buckets from encoding whole books
_CHARS_PER_TOKEN_CAP = 12
_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class BuildOptions:
    chat_template: bool = True
    system_prompt: str | None = None
    isl: int | None = None  # exact input tokens per prompt (template included)

    def key(self) -> dict:
        return {"chat_template": self.chat_template, "system_prompt": self.system_prompt, "isl": self.isl}


def _messages(row: Conversation, options: BuildOptions, first_turn: str) -> list[dict]:
    messages = [{"role": "system", "content": options.system_prompt}] if options.system_prompt else []
    return messages + list(row.history) + [{"role": "user", "content": first_turn}]


def render_messages(tokenizer: ChatTokenizer, messages: Sequence[dict], chat_template: bool) -> str:
    """The text a conversation is sent as: the chat template applied, or (raw completions) the
    messages' contents joined by blank lines. Also used during the run for later turns."""
    return tokenizer.render(messages) if chat_template else _SEPARATOR.join(m["content"] for m in messages)


def build_prompts(rows: Sequence[Conversation], tokenizer: ChatTokenizer | None, options: BuildOptions) -> list[Prompt]:
    if options.isl is not None and options.isl < 1:
        raise UsageError(f"--isl must be at least 1, got {options.isl}")
    token_rows = [r for r in rows if r.prompt_token_ids is not None]
    if token_rows and options.isl is not None:
        raise UsageError("--isl applies to text workloads; these rows come pre-tokenized (prompt_token_ids)")
    if tokenizer is None and len(token_rows) < len(rows):
        raise UsageError("this workload is text: pass --tokenizer (the target model's) to tokenize it here")
    if options.isl is not None:
        return _build_exact(rows, tokenizer, options)
    texts = []
    for row in rows:
        if row.prompt_token_ids is None:
            messages = _messages(row, options, row.turns[0])
            texts.append(render_messages(tokenizer, messages, options.chat_template))
    encoded = iter(tokenizer.encode_many(texts) if texts else [])
    prompts = []
    for row in rows:
        ids = row.prompt_token_ids if row.prompt_token_ids is not None else next(encoded)
        prompts.append(_prompt(row, np.asarray(ids, dtype=np.int32), options))
    return prompts


def _prompt(row: Conversation, ids: np.ndarray, options: BuildOptions) -> Prompt:
    multi = len(row.turns) > 1
    return Prompt(row.row_id, ids, row.category, row.sub_category, row.max_tokens,
                  messages=tuple(_messages(row, options, row.turns[0])) if multi else (),
                  followups=tuple(row.turns[1:]))


def _build_exact(rows: Sequence[Conversation], tokenizer: ChatTokenizer, options: BuildOptions) -> list[Prompt]:
    """Each prompt gets exactly `isl` ids: template prefix + content + template suffix.

    The content is the row's first turn cut to fit, or followed by natural text (the other rows'
    turns, in order, from the next row on) when it is too short; never random ids. The template's
    own ids come from rendering it around the content and encoding the text before and after it.
    Multi-turn rows send their first turn only here: a bucket is about one input length.
    """
    isl = options.isl
    contents = [row.turns[0] for row in rows]
    budget_chars = isl * _CHARS_PER_TOKEN_CAP
    frames: list[tuple[list[int], list[int]]] = []
    frame_cache: dict[tuple[str, str], tuple[list[int], list[int]]] = {}
    for row, content in zip(rows, contents):
        messages = _messages(row, options, content)
        text = render_messages(tokenizer, messages, options.chat_template)
        at = text.rfind(content)
        prefix, suffix = text[:at], text[at + len(content):]
        if (prefix, suffix) not in frame_cache:
            frame_cache[(prefix, suffix)] = (tokenizer.encode(prefix) if prefix else [],
                                             tokenizer.encode(suffix) if suffix else [])
        frames.append(frame_cache[(prefix, suffix)])
    content_ids = tokenizer.encode_many([c[:budget_chars] for c in contents])
    # The natural text that pads short prompts: all rows' first turns, one after the other.
    filler = np.fromiter((t for ids in content_ids for t in ids), dtype=np.int32,
                         count=sum(len(ids) for ids in content_ids))
    separator = tokenizer.encode(_SEPARATOR)
    starts = np.cumsum([0] + [len(ids) for ids in content_ids[:-1]]) if filler.size else []
    prompts = []
    for i, (row, (head, tail), ids) in enumerate(zip(rows, frames, content_ids)):
        room = isl - len(head) - len(tail)
        if room < 1:
            raise UsageError(f"--isl {isl} is shorter than the chat template's own {len(head) + len(tail)} tokens; "
                             "choose a larger --isl or --no-chat-template")
        body = ids[:room]
        if len(body) < room:
            need = room - len(body) - len(separator)
            if need > filler.size:
                raise UsageError(f"--isl {isl} needs up to {room} tokens of text per prompt, but this dataset holds "
                                 f"only {filler.size} tokens of text in all; choose a smaller --isl or a larger dataset")
            start = (int(starts[(i + 1) % len(rows)]) if len(rows) > 1 else 0) % filler.size
            pad = np.take(filler, np.arange(start, start + max(need, 0)), mode="wrap")
            body = (list(body) + separator + pad.tolist())[:room]
        out = np.asarray(head + list(body) + tail, dtype=np.int32)
        assert out.size == isl
        prompts.append(Prompt(row.row_id, out, row.category, row.sub_category, row.max_tokens))
    return prompts

