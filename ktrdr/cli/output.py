"""Rendering for every command: JSON or rich tables to stdout, messages to stderr.

rich is imported inside the functions so `ktrdr --help` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ktrdr.cli import settings

if TYPE_CHECKING:
    from rich.console import Console


PIPED_WIDTH = 240


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def console(*, stderr: bool = False) -> Console:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Piped output (agents, grep) is not wrapped at 80 columns; a terminal keeps its own width.
    width = None if stream.isatty() or settings.is_set("COLUMNS") else PIPED_WIDTH
    # highlight=False: user data (names, paths) must print exactly as given.
    return Console(
        stderr=stderr, highlight=False, no_color=settings.is_set("NO_COLOR"), width=width
    )


def escape(text: object) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(str(text))


def print_table(
    columns: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    title: str | None = None,
    fit: bool = False,
) -> bool:
    """A rich table on a terminal (cells folded to its width); piped, plain columns (exact
    values, and no rich import: agents poll `ktrdr sandbox list` in loops). `fit`: piped
    lines are cut to the width (long prose cells padded the whole table to hundreds of
    characters); returns True when a cell was cut, so the caller can point to --json."""
    if not sys.stdout.isatty():
        return _print_plain_table(columns, rows, title=title, width=output_width() if fit else None)
    from rich.table import Table

    table = Table(title=title, box=None, pad_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if cell is None else escape(cell) for cell in row))
    console().print(table)
    return False


def output_width() -> int:
    """COLUMNS, else the width of whichever of stdout/stderr is a terminal, else PIPED_WIDTH."""
    columns = settings.get("COLUMNS")
    if columns.isdigit():
        return int(columns)
    for stream in (sys.stdout, sys.stderr):
        try:
            return os.get_terminal_size(stream.fileno()).columns
        except (OSError, ValueError, AttributeError):
            continue
    return PIPED_WIDTH


def fit_widths(widths: list[int], minimums: list[int], total: int, gap: int = 2) -> list[int]:
    """Shrink the widest columns, one character at a time, until the row fits `total`."""
    fitted = list(widths)
    while sum(fitted) + gap * (len(fitted) - 1) > total:
        widest = max(range(len(fitted)), key=lambda i: fitted[i] - minimums[i])
        if fitted[widest] <= minimums[widest]:
            break  # headers alone are wider: nothing left to cut
        fitted[widest] -= 1
    return fitted


def _cut(cell: str, width: int) -> str:
    return cell if len(cell) <= width else cell[: max(0, width - 1)] + "…"


def _print_plain_table(
    columns: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    title: str | None,
    width: int | None = None,
) -> bool:
    cells = [list(columns)] + [["" if cell is None else str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    if width is not None:
        widths = fit_widths(widths, [max(len(c), 8) for c in columns], width)
    cut = any(len(cell) > w for row in cells for cell, w in zip(row, widths, strict=True))
    lines = [title] if title else []
    for row in cells:
        lines.append(
            "  ".join(_cut(cell, w).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        )
    sys.stdout.write("\n".join(lines) + "\n")
    return cut


def print_fields(pairs: Iterable[tuple[str, object]]) -> None:
    """Aligned `key: value` lines. Plain writes, not rich: values (names like `[bold]x`, long
    paths) print exactly as given and unwrapped, and create/status skip importing rich."""
    items = list(pairs)
    width = max((len(key) for key, _ in items), default=0)
    for key, value in items:
        sys.stdout.write(f"{key + ':':<{width + 1}} {'' if value is None else value}\n")


def info(message: str) -> None:
    """Progress and notes go to stderr so stdout stays parseable."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
