"""Per-category acceptance: `--accept-profile FILE`.

The file is one JSON object mapping a workload category to its list of CONDITIONAL acceptance
probabilities (P(draft position i accepted | positions 1..i-1 accepted)), with an optional
"default" for categories it does not name:

    {"coding": [0.9, 0.8, 0.7], "writing": [0.6, 0.4, 0.2], "default": [0.8, 0.6, 0.4]}

The client names a request's category in the `X-Loadgen-Category` header. A category missing from
the profile uses "default", else `--accept`. Every list has the same length: the draft length is
one per server, as on a real engine (and the per-position counters have one series per position).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import orjson

__all__ = ["load_accept_profile", "validate_accept_profile"]


def validate_accept_profile(profile: object, source: str = "accept profile",
                            fallback: Sequence[float] | None = None) -> dict[str, tuple[float, ...]]:
    """The profile as {category: probabilities}; ValueError with one line saying what is wrong."""
    if not isinstance(profile, Mapping):
        raise ValueError(f"{source} must be a JSON object mapping a category to a list of acceptance "
                         f"probabilities, e.g. {{\"coding\": [0.9, 0.7], \"default\": [0.8, 0.6]}}")
    if not profile:
        raise ValueError(f"{source} names no category")
    out: dict[str, tuple[float, ...]] = {}
    for category, probs in profile.items():
        if not isinstance(category, str) or not category:
            raise ValueError(f"{source}: category names must be non-empty strings")
        if (not isinstance(probs, list)
                or not all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in probs)
                or not all(math.isfinite(p) and 0.0 <= p <= 1.0 for p in probs)):
            raise ValueError(f"{source}: category {category!r} must be a list of probabilities in [0, 1], "
                             f"got {orjson.dumps(probs).decode()[:80]}")
        out[category] = tuple(float(p) for p in probs)
    lengths = {len(p) for p in out.values()}
    if len(lengths) > 1:
        shown = ", ".join(f"{c!r} has {len(p)}" for c, p in list(out.items())[:4])
        raise ValueError(f"{source}: every list must have the same length (the server's draft length): {shown}")
    if "default" not in out and fallback is not None and len(fallback) != lengths.pop():
        raise ValueError(f"{source} has {len(next(iter(out.values())))} draft positions but --accept has "
                         f"{len(fallback)}, and without a \"default\" entry --accept serves the other categories")
    return out


def load_accept_profile(path: str | Path, fallback: Sequence[float] | None = None) -> dict[str, tuple[float, ...]]:
    """Read and validate an accept profile file; ValueError with one line naming the file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read accept profile {path}: {exc.strerror or exc}") from None
    try:
        profile = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"accept profile {path} is not valid JSON: {exc}") from None
    return validate_accept_profile(profile, f"accept profile {path}", fallback)
