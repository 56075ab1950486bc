"""Per-category acceptance: `--accept-profile FILE`, and the ground truth it stands for.

The file is one JSON object mapping a workload category to its acceptance, with an optional
"default" for categories it does not name. An entry is either the list of CONDITIONAL acceptance
probabilities (P(draft position i accepted | positions 1..i-1 accepted)) or an object that adds
how acceptance moves with the output position, the request, the sampling temperature and the
prompt-output overlap:

    {"coding": {"accept": [0.9, 0.8, 0.7], "position_slope": 0.8, "request_spread": 0.3,
                "copy": 0.5, "copy_gain": 0.8, "temperature_slope": 0.35},
     "writing": [0.6, 0.4, 0.2], "default": [0.8, 0.6, 0.4]}

At each verify step of request r the conditional probabilities used are (step_probabilities)

    q_i  = clip01(p_i * u_r * (1 + position_slope * (t / max_tokens - 0.5)) * max(0, 1 - temperature_slope * T))
    q_i' = q_i + (1 - q_i) * copy_gain * c_r

t the output tokens produced before the step (the prefill's included), T the request's temperature,
u_r ~ Uniform(1 - request_spread, 1 + request_spread) and c_r ~ Uniform(0, min(1, 2 * copy)) drawn
once per request. c_r is also the share of the request's output-id segments copied from its prompt
(server.py). Every key defaults to 0 except `accept` (required) and `temperature_slope`, whose
default is the server's --accept-temperature-slope. expected_acceptance_length() gives the expected
tokens per verify step for a test to hold a measured figure against.

The client names a request's category in the `X-Loadgen-Category` header. A category missing from
the profile uses "default", else `--accept`. Every list has the same length: the draft length is
one per server, as on a real engine (and the per-position counters have one series per position).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

__all__ = ["AcceptSettings", "load_accept_profile", "validate_accept_profile", "step_probabilities",
           "expected_acceptance_length", "request_factor", "DEFAULT_TEMPERATURE_SLOPE"]

#: acceptance falls by this share per unit of temperature: the seeds' vLLM study saw acceptance fall
#: from 0.81 at temperature 0 to 0.38 at 1.5, i.e. (1 - 0.38 / 0.81) / 1.5 = 0.354
DEFAULT_TEMPERATURE_SLOPE = 0.35


@dataclass(frozen=True)
class AcceptSettings:
    """One category's acceptance: the conditional probabilities and the knobs that move them."""

    accept: tuple[float, ...]
    #: acceptance scales by 1 + position_slope * (t / max_tokens - 0.5): > 0 rises along the output
    position_slope: float = 0.0
    #: each request's acceptance scales by u_r ~ Uniform(1 - request_spread, 1 + request_spread)
    request_spread: float = 0.0
    #: the mean prompt-output overlap: c_r ~ Uniform(0, min(1, 2 * copy)) per request
    copy: float = 0.0
    #: how much overlap lifts acceptance: q' = q + (1 - q) * copy_gain * c_r
    copy_gain: float = 0.0
    #: acceptance scales by max(0, 1 - temperature_slope * T); None: the server's --accept-temperature-slope
    temperature_slope: float | None = None

    @property
    def varies_per_request(self) -> bool:
        """Whether a request's probabilities can differ from `accept` at temperature 0."""
        return bool(self.position_slope or self.request_spread or self.copy)


#: an object entry's keys -> the range each value must lie in (accept is checked on its own)
_KNOB_RANGES = {"position_slope": (-2.0, 2.0), "request_spread": (0.0, 1.0), "copy": (0.0, 1.0),
                "copy_gain": (0.0, 1.0), "temperature_slope": (0.0, math.inf)}
_KNOB_HINTS = {"position_slope": "so that 1 + slope * (t / max_tokens - 0.5) stays >= 0",
               "request_spread": "so that u_r stays >= 0", "copy": "a share", "copy_gain": "a share",
               "temperature_slope": "acceptance falls with temperature"}


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _probabilities(value: object, where: str) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)) or not all(_is_number(p) and 0.0 <= p <= 1.0 for p in value):
        raise ValueError(f"{where} must be a list of probabilities in [0, 1], "
                         f"got {orjson.dumps(value, default=str).decode()[:80]}")
    return tuple(float(p) for p in value)


def _settings(entry: object, where: str) -> AcceptSettings:
    """One entry (a list, or an object with `accept` and knobs) -> AcceptSettings."""
    if isinstance(entry, AcceptSettings):
        entry = {k: v for k, v in vars(entry).items() if v is not None}
    if not isinstance(entry, Mapping):
        return AcceptSettings(_probabilities(entry, where))
    unknown = [k for k in entry if k != "accept" and k not in _KNOB_RANGES]
    if unknown:
        raise ValueError(f"{where} has unknown key {unknown[0]!r}; an entry takes accept, "
                         f"{', '.join(_KNOB_RANGES)}")
    if "accept" not in entry:
        raise ValueError(f"{where} needs \"accept\": its list of conditional acceptance probabilities")
    knobs: dict[str, float] = {}
    for key, (low, high) in _KNOB_RANGES.items():
        if key in entry:
            value = entry[key]
            if not _is_number(value) or not low <= value <= high:
                raise ValueError(f"{where}: {key} must be a number in [{low:g}, {high:g}] ({_KNOB_HINTS[key]}), "
                                 f"got {orjson.dumps(value, default=str).decode()[:40]}")
            knobs[key] = float(value)
    return AcceptSettings(_probabilities(entry["accept"], f"{where}: accept"), **knobs)


def validate_accept_profile(profile: object, source: str = "accept profile",
                            fallback: Sequence[float] | None = None) -> dict[str, AcceptSettings]:
    """The profile as {category: AcceptSettings}; ValueError with one line saying what is wrong.
    Entries may be lists, objects (see the module docstring) or AcceptSettings."""
    if not isinstance(profile, Mapping):
        raise ValueError(f"{source} must be a JSON object mapping a category to a list of acceptance "
                         f"probabilities, e.g. {{\"coding\": [0.9, 0.7], \"default\": [0.8, 0.6]}}")
    if not profile:
        raise ValueError(f"{source} names no category")
    out: dict[str, AcceptSettings] = {}
    for category, entry in profile.items():
        if not isinstance(category, str) or not category:
            raise ValueError(f"{source}: category names must be non-empty strings")
        out[category] = _settings(entry, f"{source}: category {category!r}")
    lengths = {len(s.accept) for s in out.values()}
    if len(lengths) > 1:
        shown = ", ".join(f"{c!r} has {len(s.accept)}" for c, s in list(out.items())[:4])
        raise ValueError(f"{source}: every accept list must have the same length (the server's draft length): "
                         f"{shown}")
    if "default" not in out and fallback is not None and len(fallback) != lengths.pop():
        raise ValueError(f"{source} has {len(next(iter(out.values())).accept)} draft positions but --accept has "
                         f"{len(fallback)}, and without a \"default\" entry --accept serves the other categories")
    return out


def load_accept_profile(path: str | Path, fallback: Sequence[float] | None = None) -> dict[str, AcceptSettings]:
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


def request_factor(*, scale: float = 1.0, temperature: float = 0.0, temperature_slope: float = 0.0) -> float:
    """What multiplies every p_i of a request at every step, before the position factor and the
    clip: its u_r (`scale`) times max(0, 1 - temperature_slope * T)."""
    return scale * max(0.0, 1.0 - temperature_slope * temperature)


def step_probabilities(accept: Sequence[float], *, position_frac: float = 0.5, temperature: float = 0.0,
                       scale: float = 1.0, copy_share: float = 0.0, position_slope: float = 0.0,
                       temperature_slope: float = 0.0, copy_gain: float = 0.0) -> tuple[float, ...]:
    """The conditional probabilities q_i' of one verify step (the module docstring's formula):
    `position_frac` is t / max_tokens, `scale` the request's u_r, `copy_share` its c_r."""
    factor = request_factor(scale=scale, temperature=temperature, temperature_slope=temperature_slope) \
        * (1.0 + position_slope * (position_frac - 0.5))
    boost = copy_gain * copy_share
    out = []
    for p in accept:
        q = min(1.0, max(0.0, p * factor))
        out.append(q + (1.0 - q) * boost)
    return tuple(out)


def expected_acceptance_length(accept: Sequence[float], *, position_frac: float = 0.5, temperature: float = 0.0,
                               scale: float = 1.0, copy_share: float = 0.0, position_slope: float = 0.0,
                               temperature_slope: float = 0.0, copy_gain: float = 0.0) -> float:
    """Expected tokens per verify step, 1 + q1' + q1' q2' + ..., for the step_probabilities() given
    (a full draft: a step that max_tokens cuts short accepts at most what is left)."""
    probs = step_probabilities(accept, position_frac=position_frac, temperature=temperature, scale=scale,
                               copy_share=copy_share, position_slope=position_slope,
                               temperature_slope=temperature_slope, copy_gain=copy_gain)
    total, run = 1.0, 1.0
    for q in probs:
        run *= q
        total += run
    return total
