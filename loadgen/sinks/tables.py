"""Tables of rows, the shape every study's result takes: printed on the console (rich) or written
as CSV. The studies decide the rows and their cells; these functions only lay them out, so every
table and CSV loadgen writes looks and parses the same way.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

__all__ = ["cell", "print_table", "write_csv"]


def cell(value: float | None, fmt: str = "{:.2f}") -> str:
    """A number as a table shows it: `fmt`, or "-" where there is no value."""
    return "-" if value is None else fmt.format(value)


def print_table(console: Console, title: str, columns: Sequence[str], rows: Iterable[Sequence[str]], *,
                left: Collection[str] = ()) -> None:
    """A titled table of formatted cells; numbers align right, the columns named in `left` (text
    such as labels) left."""
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, justify="left" if column in left else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, object]]) -> None:
    """One line per row, the `columns` in order: a key a row lacks is left empty and one it has
    beyond them is left out. Written to a temporary file and moved into place, so a reader never
    sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
