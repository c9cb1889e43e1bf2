"""Docker-style plain tables: columns padded with three spaces, no borders."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    for line in [headers, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=True)]
        click.echo("   ".join(cells).rstrip())


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=4))


def print_json_lines(items: Sequence[Any]) -> None:
    for item in items:
        click.echo(json.dumps(item, separators=(",", ":")))


def fail(message: str, code: int = 1) -> click.exceptions.Exit:
    """Print one error line and return the exit to raise."""
    click.echo(f"Error: {message}", err=True)
    return click.exceptions.Exit(code)
