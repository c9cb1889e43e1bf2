"""Pulls that other commands make before they act (`run`, `compose up`, `compose pull`):
the same request and progress as `hypr pull`, shown on a stream of the caller's choice
(stderr for `run`, as Docker prints them)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any, TextIO
from urllib.parse import quote

import click

from hypr.cli import credentials
from hypr.cli.client import ClientError, DaemonUnavailable
from hypr.cli.context import api


def auth_headers(image: str) -> dict[str, str]:
    """`X-Registry-Auth` with the stored credentials of `image`'s registry, if any."""
    server = credentials.registry_of(image)
    creds = credentials.load(server)
    if creds is None:
        return {}
    return {"X-Registry-Auth": credentials.registry_auth_header(server, creds)}


def show_pull(reference: str, out: TextIO, quiet: bool = False) -> dict[str, Any]:
    """Pull `reference`, printing the progress on `out` (bars on a terminal, Docker's lines
    otherwise, nothing if `quiet`); returns the final `aux` line. A failed pull raises
    ClientError with the daemon's one line."""
    with (
        api().stream(
            "POST",
            "/images/pull",
            json={"reference": reference},
            timeout=None,
            headers=auth_headers(reference),
        ) as response,
        contextlib.redirect_stdout(out),
    ):
        events = (json.loads(line) for line in response.iter_lines() if line.strip())
        if quiet:
            result = _drain(events)
        else:
            result = _show_bars(events) if out.isatty() else _show_lines(events)
    if "error" in result:
        raise ClientError(result["message"])
    return result


def local_image(reference: str) -> dict[str, Any] | None:
    """The daemon's image by that name (`image inspect`'s JSON), None if it has none."""
    try:
        found: dict[str, Any] = api().get(f"/images/{quote(reference, safe='')}/json")
    except DaemonUnavailable:
        raise
    except ClientError:
        return None
    return found


def pull_as(reference: str, policy: str, out: TextIO) -> bool:
    """Pull when `policy` asks for it (`always`, or `missing` and the daemon has no such
    image); True if it did. `missing` says so first, as `docker run` does. A built-in
    image comes from no registry: `always` leaves it as it is."""
    if policy == "never":
        return False
    local = local_image(reference)
    if local is not None and (policy == "missing" or _builtin(local["Id"])):
        return False
    if policy == "missing":
        print(f"Unable to find image '{reference}' locally", file=out, flush=True)
    show_pull(reference, out)
    return True


def _builtin(image_id: str) -> bool:
    return any(i["Id"] == image_id and i.get("Builtin") for i in api().get("/images"))


def _drain(events: Iterator[dict[str, Any]]) -> dict[str, Any]:
    """The last line: the result (`aux`) or the error."""
    for event in events:
        if "aux" in event or "error" in event:
            return event
    raise ClientError("the pull ended without a result")


def _show_lines(events: Iterator[dict[str, Any]]) -> dict[str, Any]:
    """Docker's plain output off a terminal: each step's line, no byte counts."""
    for event in events:
        if "aux" in event or "error" in event:
            return event
        if event.get("progressDetail"):
            continue
        status = event.get("status", "")
        click.echo(f"{event['id']}: {status}" if event.get("id") else status)
    raise ClientError("the pull ended without a result")


def _show_bars(events: Iterator[dict[str, Any]]) -> dict[str, Any]:
    """A bar per layer, as Docker draws them on a terminal."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn())
    tasks: dict[str, Any] = {}
    with Progress(*columns, transient=False) as bars:
        for event in events:
            if "aux" in event or "error" in event:
                return event
            layer, status = event.get("id"), event.get("status", "")
            if not layer:
                bars.console.print(status, highlight=False)
                continue
            if layer not in tasks:
                tasks[layer] = bars.add_task(f"{layer}: {status}", total=None)
            task = tasks[layer]
            detail = event.get("progressDetail") or {}
            if detail:
                bars.update(task, completed=detail["current"], total=detail["total"])
            finished = status in ("Already exists", "Pull complete", "Download complete")
            if finished and bars.tasks[task].total is None:
                bars.update(task, total=1, completed=1)
            bars.update(task, description=f"{layer}: {status}")
    raise ClientError("the pull ended without a result")
