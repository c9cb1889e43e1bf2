"""Docker's `GET /events`: the daemon's event bus as a stream of JSON objects, one a line.

`since` replays the events the bus still keeps, then the stream follows new ones; `until`
ends it at that time (at once if it has passed). Without `since`, only new events come, as
from Docker. `filters` are Docker's: type, event, container, network, image, label, scope.
The stream ends when the client goes away (the server reports the disconnect).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from hypr.api.deps import daemon_of
from hypr.api.docker.filters import (
    Filters,
    match_labels,
    match_prefix,
    parse_filters,
    timestamp_nanos,
)
from hypr.daemon.events import Event

router = APIRouter(tags=["docker events"])

FILTERS = ("type", "event", "container", "network", "image", "label", "scope")


@router.get("/events")
async def events(
    request: Request, since: str | None = None, until: str | None = None, filters: str = ""
) -> StreamingResponse:
    wanted = parse_filters(filters, FILTERS)
    since_nano = timestamp_nanos(since) if since else None
    until_nano = timestamp_nanos(until) if until else None
    daemon = daemon_of(request)

    async def lines() -> AsyncIterator[bytes]:
        with daemon.subscribe_events() as queue:  # before the replay: no event falls between
            seen = 0
            for event in daemon.recent_events(since_nano) if since_nano is not None else []:
                if until_nano is not None and event.time_nano > until_nano:
                    return
                seen = event.seq
                if selected(event, wanted):
                    yield _line(event)
            while True:
                timeout = None
                if until_nano is not None:
                    timeout = max(0.0, (until_nano - time.time_ns()) / 1e9)
                try:
                    event = await asyncio.wait_for(queue.get(), timeout)
                except TimeoutError:
                    return
                if until_nano is not None and event.time_nano > until_nano:
                    return
                if event.seq > seen and selected(event, wanted):
                    yield _line(event)

    return StreamingResponse(lines(), media_type="application/json")


def docker_event(event: Event) -> dict[str, Any]:
    """Docker's event JSON; container events also carry the old `status`, `id`, `from`."""
    body: dict[str, Any] = {}
    if event.type == "container":
        body = {"status": event.action, "id": event.actor_id}
        body["from"] = event.attributes.get("image", "")
    return {
        **body,
        "Type": event.type,
        "Action": event.action,
        "Actor": {"ID": event.actor_id, "Attributes": event.attributes},
        "scope": "local",
        "time": event.time_nano // 1_000_000_000,
        "timeNano": event.time_nano,
    }


def selected(event: Event, wanted: Filters) -> bool:
    """Docker's rules: values of one key are ORed, keys ANDed; `container` and `network`
    match an actor's id prefix or its name, `label` the attributes (all of them)."""
    attributes = event.attributes
    name = attributes.get("name", "")
    checks: dict[str, Callable[[list[str]], bool]] = {
        "type": lambda values: event.type in values,
        "event": lambda values: event.action in values,
        "scope": lambda values: "local" in values,
        "container": lambda values: (
            event.type == "container" and match_prefix(values, event.actor_id, name)
        ),
        "network": lambda values: (
            event.type == "network" and match_prefix(values, event.actor_id, name)
        ),
        "image": lambda values: match_prefix(values, attributes.get("image", "")),
        "label": lambda values: match_labels(values, attributes),
    }
    return all(check(wanted[key]) for key, check in checks.items() if key in wanted)


def _line(event: Event) -> bytes:
    return (json.dumps(docker_event(event)) + "\n").encode()
