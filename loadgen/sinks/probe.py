"""`loadgen probe`'s findings on the console or as JSON, and the ones a run warns of at its start."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import orjson
from rich.console import Console
from rich.markup import escape

from ..engines.base import Finding

__all__ = ["print_findings", "print_findings_json", "print_figure_warnings"]


def print_findings(console: Console, url: str, findings: Sequence[Finding]) -> None:
    """One line per check: "check: finding — consequence"; those that change a run's figures in yellow."""
    console.print(f"[bold]{escape(url)}[/]")
    for f in findings:
        style = "yellow" if f.affects_figures else "default"
        console.print(f"[{style}]{escape(f.check)}: {escape(f.finding)} — {escape(f.consequence)}[/]",
                      soft_wrap=True)


def print_findings_json(url: str, findings: Sequence[Finding]) -> None:
    """Plain JSON on stdout (not through rich, which would wrap long strings)."""
    document = {"url": url, "findings": [f.to_json() for f in findings]}
    sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")


def print_figure_warnings(console: Console, findings: Sequence[Finding]) -> None:
    """A run's start: only the findings that change its figures, once each."""
    for f in findings:
        if f.affects_figures:
            console.print(f"[yellow]note: {escape(f.finding)} — {escape(f.consequence)}[/]", soft_wrap=True)
