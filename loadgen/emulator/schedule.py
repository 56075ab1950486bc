"""A draft length that changes with the running batch, as vLLM's num_speculative_tokens_per_batch_size.

`--draft-schedule 1-7:3,8-:0` is the table [[1, 7, 3], [8, OPEN_END, 0]]: inclusive [first, last]
ranges of the number of requests running, each with its draft length K (0: no draft). As vLLM
(vllm/v1/spec_decode/dynamic/utils.py): the first range starts at 1, ranges rise without overlap,
a number in a gap keeps the previous range's K, and past the last range its K holds.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["DraftSchedule", "parse_draft_schedule", "draft_length_at"]

#: ((first, last or None for open-ended, K), ...), rising, the first from 1
DraftSchedule = tuple[tuple[int, int | None, int], ...]


def parse_draft_schedule(text: str, max_draft: int) -> DraftSchedule:
    """'1-7:3,8-:0' -> ((1, 7, 3), (8, None, 0)); ValueError (naming the item) for anything else,
    or for a K above max_draft (the positions --accept gives)."""
    ranges: list[tuple[int, int | None, int]] = []
    example = "e.g. 1-7:3,8-:0 (requests running FIRST-LAST:K, LAST left out for no end)"
    for item in filter(None, (part.strip() for part in text.split(","))):
        span, colon, k_text = item.partition(":")
        first_text, dash, last_text = span.partition("-")
        try:
            first, k = int(first_text), int(k_text)
            last = (int(last_text) if last_text.strip() else None) if dash else first
        except ValueError:
            raise ValueError(f"--draft-schedule: {item!r} is not FIRST-LAST:K; {example}") from None
        if not colon or first < 1 or k < 0 or (last is not None and last < first):
            raise ValueError(f"--draft-schedule: {item!r} is not FIRST-LAST:K with 1 <= FIRST <= LAST and K >= 0; "
                             f"{example}")
        if k > max_draft:
            raise ValueError(f"--draft-schedule: K {k} in {item!r} is above the {max_draft} draft positions "
                             "--accept gives")
        if ranges:
            previous_last = ranges[-1][1]
            if previous_last is None or first <= previous_last:
                raise ValueError(f"--draft-schedule: {item!r} overlaps the range before it; ranges must rise")
        elif first != 1:
            raise ValueError(f"--draft-schedule: the first range must start at 1 (as vLLM requires), got {item!r}")
        ranges.append((first, last, k))
    if not ranges:
        raise ValueError(f"--draft-schedule is empty; {example}")
    return tuple(ranges)


def draft_length_at(schedule: Sequence[tuple[int, int | None, int]], running: int) -> int:
    """K for a step with `running` requests running: the range holding it, else the last range
    that starts at or below it (a gap keeps the previous K)."""
    k = schedule[0][2]
    for first, _, draft in schedule:
        if first > running:
            break
        k = draft
    return k
