"""`loadgen tune`'s schedule (tune.json "schedule": concurrency ranges -> draft length K, 0 off) as
each engine, at the version its recipes pin, can deploy it: in the engine's own format where it takes
a draft length per batch size or a batch size above which it stops speculating, else the one K to
serve. What each engine takes, and where that was read, is declared in the engine's own module
(EngineSpec.schedule_support); servers/SOURCES.md §7 holds the research."""

from __future__ import annotations

from .base import ScheduleSupport
from .registry import ENGINES

__all__ = ["engine_schedules"]


def engine_schedules(schedule: dict, load: tuple[int, int | None] | None = None) -> list[dict]:
    """One entry per engine that declares its schedule support:

    engine; supported (it takes a load-dependent K: a table, or an off threshold); accepts
    ("per_batch_size", "off_above" or "none"); snippet (the text to deploy, in the engine's format;
    None where it takes nothing or speculation never pays); single_draft_length (the one K it runs
    where it runs one, else None); range ({"from", "to"}: the concurrencies the snippet or the K is
    tune's recommendation for, to None open-ended); source (where the key was read); note (what the
    snippet cannot express, then what the key does and how it reaches a recipe).

    load: (lowest, highest) concurrency the deployment will see, highest None for open-ended. An
    engine that takes one K then runs the K tune recommends at the highest; without a load, the K
    of the lowest range where speculation pays, over that range."""
    _check(schedule, load)
    return [_entry(spec.name, spec.schedule_support, schedule, load)
            for spec in ENGINES.values() if spec.schedule_support is not None]


def _check(schedule: dict, load: tuple[int, int | None] | None) -> None:
    ranges = schedule.get("ranges") or []
    if not ranges:
        raise ValueError("a tune schedule holds at least one range")
    for before, after in zip(ranges, ranges[1:]):
        if before["to"] is None or after["from"] != before["to"] + 1:
            raise ValueError(f"tune schedule ranges must follow one another: {before} then {after}")
    if ranges[-1]["to"] is not None or any(r["draft_length"] < 0 for r in ranges):
        raise ValueError("a tune schedule's last range is open-ended and every draft length is 0 or more")
    if load is not None and (load[0] < 1 or (load[1] is not None and load[1] < load[0])):
        raise ValueError(f"load {load}: give (lowest, highest) concurrency, 1 <= lowest <= highest")


def _entry(name: str, support: ScheduleSupport, schedule: dict, load: tuple[int, int | None] | None) -> dict:
    ranges = schedule["ranges"]
    paying = [r for r in ranges if r["draft_length"] > 0]
    snippet = support.snippet(schedule) if support.snippet is not None else None
    single: int | None
    if not paying:
        single, span = 0, _span(ranges[0]["from"], None)
        said = "Speculation pays at no measured concurrency: serve without it"
    elif support.accepts == "per_batch_size":
        lengths = {r["draft_length"] for r in ranges}
        single = lengths.pop() if len(lengths) == 1 else None
        span = _span(ranges[0]["from"], None)
        said = f"All {len(ranges)} ranges as tune recommends them"
        if ranges[0]["from"] > 1:
            said += (f"; the table's first range starts at batch size 1, below the lowest measured concurrency "
                     f"({ranges[0]['from']})")
    elif support.accepts == "off_above":
        single = paying[0]["draft_length"]
        off = schedule["off_from"]
        span = _span(ranges[0]["from"], None if off is None else off - 1)
        lost = [_describe(r) for r in ranges if (off is None or r["from"] < off) and r["draft_length"] != single]
        said = (f"K {single} (the lowest range where speculation pays) "
                + ("at every load: speculation never stops paying" if off is None
                   else f"up to concurrency {off - 1}, off from {off}"))
        if lost:
            said += f"; it cannot express tune's {', '.join(lost)}: K {single} runs there"
    else:
        single, span, said = _single(ranges, paying, load)
    return {"engine": name, "supported": support.accepts != "none", "accepts": support.accepts, "snippet": snippet,
            "single_draft_length": single, "range": span, "source": support.source, "note": f"{said}. {support.note}"}


def _single(ranges: list[dict], paying: list[dict], load: tuple[int, int | None] | None) -> tuple[int, dict, str]:
    """The one K an engine without a schedule runs, the concurrencies it is tune's answer for, and why."""
    if load is None:
        first = paying[0]
        above = [_describe(r) for r in ranges if r["from"] > first["from"]]
        said = (f"K {first['draft_length']}, the K of the lowest range where speculation pays, which holds at "
                f"concurrency {_text(first['from'], first['to'])}")
        if above:
            said += f"; above it tune recommends {', '.join(above)}"
        return first["draft_length"], _span(first["from"], first["to"]), said
    low, high = load
    top = ranges[-1] if high is None else max((r for r in ranges if r["from"] <= high), key=lambda r: r["from"],
                                              default=ranges[-1])
    within = [_describe(r) for r in ranges
              if (r["to"] is None or r["to"] >= low) and (high is None or r["from"] <= high)
              and r["draft_length"] != top["draft_length"]]
    said = (f"K {top['draft_length']}, the K tune recommends at the top of the stated load "
            f"{_text(low, high)} (a longer draft costs most there)")
    if within:
        said += f"; within that load tune recommends {', '.join(within)}"
    return top["draft_length"], _span(low, high), said


def _span(start: int, end: int | None) -> dict:
    return {"from": start, "to": end}


def _text(start: int, end: int | None) -> str:
    return f"{start}+" if end is None else (str(start) if end == start else f"{start}-{end}")


def _describe(r: dict) -> str:
    where = f"concurrency {_text(r['from'], r['to'])}"
    return f"off at {where}" if r["draft_length"] == 0 else f"K {r['draft_length']} at {where}"
