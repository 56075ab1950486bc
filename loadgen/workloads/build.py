"""Rows of text -> prompts of token ids: chat template, system prompt, exact input lengths."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from loadgen.errors import UsageError

from .prompt import Conversation, Prompt
from .tokenizer import ChatTokenizer

__all__ = ["BuildOptions", "build_prompts", "natural_text", "render_messages", "template_frame", "text_prompt"]

_SEPARATOR = "\n\n"
_SENTINEL = "LOADGENCONTENTSENTINEL"
#: content is cut before encoding to the characters its tokens need (measured on the row's first
#: _PROBE_CHARS) times this margin; a row that then falls short is encoded again in full
_CUT_MARGIN = 1.1
_PROBE_CHARS = 4096
_BATCH_ROWS = 64


@dataclass(frozen=True)
class BuildOptions:
    chat_template: bool = True
    system_prompt: str | None = None
    isl: int | None = None  # exact input tokens per prompt (template included)
    #: every prompt keeps its messages (--endpoint chat, --prompt-format text: the request carries
    #: text, not the ids); off, only multi-turn prompts keep them (their later turns need them)
    keep_messages: bool = False

    def key(self) -> dict:
        key: dict = {"chat_template": self.chat_template, "system_prompt": self.system_prompt, "isl": self.isl}
        if self.keep_messages:  # only then: the caches of id workloads keep their keys
            key["keep_messages"] = True
        return key


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
    if token_rows and options.keep_messages:
        raise UsageError("this workload's rows come only as token ids (prompt_token_ids), which cannot be sent as "
                         "chat messages or text: use --endpoint completions --prompt-format ids, or a text workload")
    if token_rows and options.isl is not None:
        raise UsageError("--isl applies to text workloads; these rows come pre-tokenized (prompt_token_ids)")
    if tokenizer is None and len(token_rows) < len(rows):
        raise UsageError("this workload is text: pass --tokenizer (the target model's) to tokenize it here")
    if options.isl is not None:
        assert tokenizer is not None, "an --isl workload is text (checked above), so it has a tokenizer"
        return _build_exact(rows, tokenizer, options)
    encoded: Iterator[list[int]] = iter([])
    if tokenizer is not None:  # None only where every row is pre-tokenized (checked above)
        texts = [render_messages(tokenizer, _messages(row, options, row.turns[0]), options.chat_template)
                 for row in rows if row.prompt_token_ids is None]
        encoded = iter(tokenizer.encode_many(texts) if texts else [])
    prompts = []
    for row in rows:
        ids = row.prompt_token_ids if row.prompt_token_ids is not None else next(encoded)
        prompts.append(_prompt(row, np.asarray(ids, dtype=np.int32), options))
    return prompts


def _prompt(row: Conversation, ids: np.ndarray, options: BuildOptions) -> Prompt:
    keep = len(row.turns) > 1 or options.keep_messages
    return Prompt(row.row_id, ids, row.category, row.sub_category, row.max_tokens,
                  messages=tuple(_messages(row, options, row.turns[0])) if keep else (),
                  followups=tuple(row.turns[1:]))


def _build_exact(rows: Sequence[Conversation], tokenizer: ChatTokenizer, options: BuildOptions) -> list[Prompt]:
    """Each prompt gets exactly `isl` ids: template prefix + content + template suffix.

    The content is the row's first turn cut to fit, or followed by natural text (the other rows'
    turns, in order, from the next row on) when it is too short; never random ids. The template's
    own ids come from encoding its text before and after the content.
    Multi-turn rows send their first turn only here: a bucket is about one input length.
    """
    isl = options.isl
    assert isl is not None, "build_prompts calls this only with --isl"
    contents = [row.turns[0] for row in rows]
    frames: list[tuple[list[int], list[int]]] = []
    frame_cache: dict[tuple[str, str], tuple[list[int], list[int]]] = {}
    for row in rows:
        texts = _frame_texts(tokenizer, row, options)
        if texts not in frame_cache:
            frame_cache[texts] = _encode_frame(tokenizer, texts)
        frames.append(frame_cache[texts])
    content_ids = _encode_cut(tokenizer, contents, isl)
    separator = np.asarray(tokenizer.encode(_SEPARATOR), np.int32)
    filler: np.ndarray | None = None
    starts = np.cumsum([0] + [ids.size for ids in content_ids[:-1]])
    prompts = []
    for i, (row, (head, tail), ids) in enumerate(zip(rows, frames, content_ids)):
        room = isl - len(head) - len(tail)
        if room < 1:
            raise UsageError(f"--isl {isl} is shorter than the chat template's own {len(head) + len(tail)} tokens; "
                             "choose a larger --isl or --no-chat-template")
        body = ids[:room]
        if body.size < room:
            if filler is None:  # the natural text that pads short prompts: all rows' first turns in order
                filler = np.concatenate(content_ids)
            need = room - body.size - separator.size
            if need > filler.size:
                raise UsageError(f"--isl {isl} needs up to {room} tokens of text per prompt, but this dataset "
                                 f"holds only {filler.size} tokens of text in all; choose a smaller --isl or a "
                                 "larger dataset")
            start = (int(starts[(i + 1) % len(rows)]) if len(rows) > 1 else 0) % filler.size
            pad = np.take(filler, np.arange(start, start + max(need, 0)), mode="wrap")
            body = np.concatenate([body, separator, pad])[:room]
        out = np.concatenate([np.asarray(head, np.int32), body, np.asarray(tail, np.int32)])
        assert out.size == isl
        if options.keep_messages:
            prompts.append(text_prompt(row, tokenizer, options, body))
        else:
            prompts.append(Prompt(row.row_id, out, row.category, row.sub_category, row.max_tokens))
    return prompts


def _frame_texts(tokenizer: ChatTokenizer, row: Conversation, options: BuildOptions) -> tuple[str, str]:
    """The template's text before and after the row's first turn, found by rendering around a sentinel
    (templates may trim or escape the content itself, so searching for it is unreliable)."""
    text = render_messages(tokenizer, _messages(row, options, _SENTINEL), options.chat_template)
    prefix, _, suffix = text.rpartition(_SENTINEL)
    return prefix, suffix


def _encode_frame(tokenizer: ChatTokenizer, texts: tuple[str, str]) -> tuple[list[int], list[int]]:
    prefix, suffix = texts
    return tokenizer.encode(prefix) if prefix else [], tokenizer.encode(suffix) if suffix else []


def template_frame(tokenizer: ChatTokenizer, options: BuildOptions) -> tuple[list[int], list[int]]:
    """The ids the chat template (with --system-prompt) puts before and after one user message's
    content: what a prompt of an exact length leaves to its text."""
    return _encode_frame(tokenizer, _frame_texts(tokenizer, Conversation("frame", "frame"), options))


def natural_text(tokenizer: ChatTokenizer, contents: Sequence[str], need: int) -> np.ndarray:
    """`need` ids of the contents' text in order, each content followed by a blank line; fewer where
    all of them hold less. Contents are encoded a batch at a time (each cut to what is still needed),
    so a large dataset is encoded only as far as it is read."""
    separator = np.asarray(tokenizer.encode(_SEPARATOR), np.int32)
    parts: list[np.ndarray] = []
    have = 0
    for at in range(0, len(contents), _BATCH_ROWS):
        if have >= need:
            break
        for ids in _encode_cut(tokenizer, contents[at:at + _BATCH_ROWS], need - have):
            parts += [ids, separator]
            have += ids.size + separator.size
    return np.concatenate(parts)[:need] if parts else np.empty(0, np.int32)


def text_prompt(row: Conversation, tokenizer: ChatTokenizer, options: BuildOptions, body: np.ndarray) -> Prompt:
    """A prompt sent as text (chat messages or a text completion) at --isl: the user message is the
    cut content decoded, and the ids are that text's own encoding, which is what the request's
    tokens are counted against. Decoding and encoding again can merge or split a token where the
    content was cut, so such a prompt may be a token or two off isl (a trace's rows alike)."""
    messages = _messages(row, options, tokenizer.decode(body.tolist()))
    ids = np.asarray(tokenizer.encode(render_messages(tokenizer, messages, options.chat_template)), np.int32)
    return Prompt(row.row_id, ids, row.category, row.sub_category, row.max_tokens, messages=tuple(messages))


def _encode_cut(tokenizer: ChatTokenizer, contents: Sequence[str], isl: int) -> list[np.ndarray]:
    """Encode each content, cut first to about the characters `isl` tokens take: SPEED-Bench's
    32k bucket alone is ~50M tokens, so encoding text that would be cut off anyway is the main cost.
    Each row's characters per token are measured on its first few KiB. Rows go in batches, each
    turned into int32 arrays at once, so Python's int lists never hold the whole workload."""
    probe = [c[:_PROBE_CHARS] for c in contents]
    cuts = []
    for text, ids in zip(probe, tokenizer.encode_many(probe)):
        chars_per_token = len(text) / len(ids) if ids else 8.0
        cuts.append(int(isl * chars_per_token * _CUT_MARGIN) + 512)
    encoded: list[np.ndarray] = []
    for at in range(0, len(contents), _BATCH_ROWS):
        batch = [c[:cut] for c, cut in zip(contents[at:at + _BATCH_ROWS], cuts[at:at + _BATCH_ROWS])]
        encoded += [np.asarray(ids[:isl], np.int32) for ids in tokenizer.encode_many(batch)]
    short = [i for i, (c, cut, ids) in enumerate(zip(contents, cuts, encoded)) if len(c) > cut and ids.size < isl]
    for i, ids in zip(short, tokenizer.encode_many([contents[i] for i in short])):
        encoded[i] = np.asarray(ids[:isl], np.int32)
    return encoded
