"""`loadgen report DIR`: a finished run's pictures drawn again, or the report of a run rebuilt
from its journal (a run killed before it could write one)."""

from __future__ import annotations

from pathlib import Path

import orjson
from rich.console import Console

from ..analysis import Report, build_report
from ..config import parse_slo
from ..engines import get_adapter
from ..errors import UsageError
from ..layout import RunFolder
from ..records import read_journal
from ..sinks import print_summary
from ..sinks.plots import render_run
from .outputs import write_report

__all__ = ["rebuild_report", "rerender_report"]


def rerender_report(out: Path, console: Console, *, rebuild: bool = False) -> Report:
    """The run's pictures and HTML drawn again from its report.json, which is rebuilt from the
    journal first where it is missing (a killed run) or `rebuild` asks for it."""
    existing = RunFolder(out).report
    if rebuild or not existing.exists():
        return rebuild_report(out, console)
    try:
        data = orjson.loads(existing.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"{existing} is not valid JSON ({exc}); use --rebuild to make it again") from None
    try:
        report = Report.from_json(data)
    except ValueError as exc:
        raise UsageError(f"{existing} is not a loadgen report ({exc}); use --rebuild to make it again") from None
    print_summary(console, report)
    console.print(f"[dim]drawn again: {render_run(report, out)}[/]")
    return report


def rebuild_report(out: Path, console: Console) -> Report:
    """The report of a run rebuilt from its journal (requests.jsonl) and run.json, for a run that
    was killed before it could write one. The engine's metrics were not kept: no server figures."""
    folder = RunFolder(out)
    try:
        run_info = orjson.loads(folder.run_info.read_bytes())
    except FileNotFoundError:
        raise UsageError(f"{out} has no {folder.run_info.name}: not the output directory of a loadgen run") from None
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"{folder.run_info} is not valid JSON ({exc}); it cannot be rebuilt") from None
    records = list(read_journal(folder.journal)) if folder.journal.exists() else []
    config = run_info["config"]
    measured = [r for r in records if not r.warmup]
    complete = config.get("num_requests") and len({r.request_id for r in measured if r.turn == 0}) >= \
        config["num_requests"]
    report = build_report(config=config, records=measured, adapter=get_adapter(config["engine"]), server=[],
                          partial=not complete, target_concurrency=run_info["target_concurrency"],
                          target_rate=run_info.get("target_rate"),
                          slo=parse_slo(config["slo"]) if config.get("slo") else (), rebuilt_from_journal=True)
    write_report(folder, report, records, console, plots=True)
    console.print(f"[dim]report rebuilt from {len(records)} journaled requests: {folder.report}[/]")
    return report
