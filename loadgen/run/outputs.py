"""A run's folder: made writable, claimed for one run only, and given the run's report."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from .. import __version__
from ..analysis import Report
from ..config import RunConfig
from ..errors import OutputError, UsageError
from ..layout import RunFolder
from ..records import RequestRecord
from ..sinks import print_summary, write_json_atomic, write_requests_csv
from ..sinks.plots import render_run

__all__ = ["prepare_output_dir", "claim_run_folder", "write_run_info", "write_report"]


def prepare_output_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"cannot write to output directory {path}: {exc.strerror}; "
                          "pass --output-dir with a writable folder") from exc
    return path


def claim_run_folder(path: Path, *, replace: bool) -> RunFolder:
    """The folder of a new run: writable, and holding no other run's files. A second run would
    append to the first one's journal, and `loadgen report --rebuild` would then merge two runs
    into one report; so such a folder is refused, or with `replace` (--replace) that run's files
    are deleted first. Files that are no run's are left alone either way."""
    folder = RunFolder(prepare_output_dir(path))
    previous = folder.existing()
    if previous and not replace:
        names = ", ".join(f.name for f in previous[:3]) + (", ..." if len(previous) > 3 else "")
        raise UsageError(f"--output-dir {path} already holds a run ({names}): give another folder, or --replace "
                         "to delete that run's files first")
    folder.clear()
    return folder


def write_run_info(folder: RunFolder, config: RunConfig, public: dict,
                   target_rate: float | None) -> tuple[dict, int | None]:
    """run.json, before the first request: what `loadgen report DIR` needs to rebuild the report from
    the journal of a killed run. Returns the run's public settings (the report's config section,
    stamped with this loadgen's version and the start time) and its target concurrency (None for
    an open loop, a trace, or concurrency levels). target_rate: the open loop's or the trace's."""
    public = public | {"loadgen_version": __version__,
                       "started_at": datetime.now(UTC).isoformat(timespec="seconds")}
    target = None if config.request_rate or config.levels or config.trace else \
        min(config.concurrency, config.num_requests or config.concurrency)
    write_json_atomic(folder.run_info, {"config": public, "target_concurrency": target,
                                        "target_rate": target_rate})
    return public, target


def write_report(folder: RunFolder, report: Report, records: Sequence[RequestRecord], console: Console, *,
                 plots: bool) -> None:
    """report.json, requests.csv, with `plots` the pictures and report.html; the summary printed."""
    write_json_atomic(folder.report, report.to_json())
    write_requests_csv(folder.requests_csv, records)
    if plots:
        render_run(report, folder.path)
    print_summary(console, report)
