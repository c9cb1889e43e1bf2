"""Long operations answered as NDJSON progress lines (pulls, builds), Docker's way.

The operation runs as a task of its own. Its errors before its first progress line (a bad
reference, a Dockerfile that does not parse) are answered as a 4xx/5xx `{"message"}`; an
error after it is the stream's last line, `{"error": ..., "errorDetail": {"message": ...}}`
(with `message` too, which hypr's CLI reads); after success the lines `finish` makes of
the result. A client that hangs up stops listening, not the operation.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from fastapi.responses import StreamingResponse

from hypr.errors import HyprError

T = TypeVar("T")
Event = dict[str, Any]
_DONE: Event = {}  # the end of the event queue


async def progress_stream(
    run: Callable[[Callable[[Event], None]], Awaitable[T]],
    finish: Callable[[T], list[Event]],
) -> StreamingResponse:
    queue: asyncio.Queue[Event] = asyncio.Queue()
    task = asyncio.create_task(_call(run, queue.put_nowait))
    task.add_done_callback(lambda _: queue.put_nowait(_DONE))
    first = await queue.get()
    if first is _DONE:
        task.result()  # raises the error as a status and {"message"}

    async def lines() -> AsyncIterator[bytes]:
        event = first
        while event is not _DONE:
            yield line(event)
            event = await queue.get()
        try:
            for event in finish(task.result()):
                yield line(event)
        except HyprError as exc:
            yield line(error_event(exc.message))
        except Exception as exc:
            yield line(error_event(f"internal error: {exc}"))

    return StreamingResponse(lines(), media_type="application/x-ndjson")


def error_event(message: str) -> Event:
    return {"error": message, "errorDetail": {"message": message}, "message": message}


def line(event: Event) -> bytes:
    return (json.dumps(event) + "\n").encode()


async def _call(
    run: Callable[[Callable[[Event], None]], Awaitable[T]], emit: Callable[[Event], None]
) -> T:
    return await run(emit)
