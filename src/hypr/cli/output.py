"""What the CLI prints, as Docker's does: plain tables (columns padded with three spaces, no
borders), JSON, one `Error:` line a failure, and the reports that commands over several
names (rm, inspect) and the prune commands share, so each says it the same way."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import click

from hypr import units
from hypr.cli.client import ClientError


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


def each(names: Sequence[str], action: Callable[[str], object]) -> None:
    """Apply `action` to every name and echo it; a failure is reported in one line and the
    others still go, then the exit status is 1, as docker does."""
    failed = False
    for name in names:
        try:
            action(name)
            click.echo(name)
        except ClientError as exc:
            click.echo(f"Error: {exc}", err=True)
            failed = True
    if failed:
        raise click.exceptions.Exit(1)


def inspect_each(names: Sequence[str], get: Callable[[str], Any]) -> None:
    """What `get` finds as one JSON list, then a line for each name it did not (exit 1)."""
    found, missing = [], []
    for name in names:
        try:
            found.append(get(name))
        except ClientError as exc:
            missing.append(str(exc))
    print_json(found)
    for message in missing:
        click.echo(f"Error: {message}", err=True)
    if missing:
        raise click.exceptions.Exit(1)


def confirm_prune(warning: str) -> bool:
    """Docker's question before a prune, after `warning`: no answer (EOF, ^C) is a no."""
    click.echo(warning)
    try:
        return click.confirm("Are you sure you want to continue?", default=False)
    except click.Abort:
        return False


def print_pruned(kind: str, deleted: Iterable[str], space: int) -> None:
    """Docker's prune report: what went (`Deleted Volumes:` ...), then the space."""
    lines = list(deleted)
    if lines:
        click.echo(f"Deleted {kind}:")
        for line in lines:
            click.echo(line)
        click.echo("")
    click.echo(f"Total reclaimed space: {units.human_size(space)}")
