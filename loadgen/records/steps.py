"""Engine steps from one-chunk-per-token streams (llama.cpp).

Such a stream says nothing per chunk about which tokens one verification step produced: a step's
tokens arrive as a burst. Grouping runs once, when the request ends, never on the read path.

How many steps there were is known exactly when the engine reports the request's accepted draft
tokens A (llama.cpp's final `timings`): the prefill yields one token and every later step one
token plus its accepted drafts, so N tokens took 1 + (N - 1 - A) steps, and a request that drafted
nothing took N. Where those steps begin is read from the stream: at the largest gaps between
chunks. Without the engine's counts, chunks closer than `gap_ns` to the previous one join its
step: an estimate that merges steps shorter than `gap_ns`, or steps a busy client read late.
"""

from __future__ import annotations

import numpy as np

__all__ = ["step_starts"]


def step_starts(token_ns: list[int], *, accepted: int | None, gap_ns: int) -> list[int]:
    """Indexes into `token_ns` (one arrival time per token) where each step's first token is."""
    n = len(token_ns)
    if n <= 1:
        return list(range(n))
    before = np.diff(np.asarray(token_ns, dtype=np.int64))  # before[i - 1]: the gap before token i
    if accepted is not None and 0 <= accepted <= n - 2:
        decode_steps = n - 1 - accepted
        # the prefill token stands alone; the decode steps begin at the largest later gaps (the
        # earlier token first among equal gaps)
        later = np.argsort(-before[1:], kind="stable")[:decode_steps - 1] + 2
        return [0, 1, *np.sort(later).tolist()]
    return [0, *(np.flatnonzero(before > gap_ns) + 1).tolist()]
