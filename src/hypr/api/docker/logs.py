"""A container's output: `GET /containers/{id}/logs`, `POST /containers/{id}/attach` and `resize`.

A hypr VM's output is its serial console, where the workload's stdout and stderr arrive
mixed: without a TTY it is framed as stdout (stream 1), and a request that wants only
stderr gets none of it. A container created with `Tty` (its console is a terminal either
way) gets the console raw, as Docker sends a TTY's. The main process has no stdin: attaching
one is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from hypr.api.deps import daemon_of
from hypr.api.docker.containers import container
from hypr.api.docker.streams import STDOUT, Output, framed, hijack, media_type
from hypr.errors import InvalidArgument

router = APIRouter(tags=["docker logs and attach"])
GONE_CHECK_SECONDS = 1.0

NO_TIMES = (
    "hypr's console log has no time for each line: timestamps, since and until are not supported"
)
NO_STDIN = (
    "hypr cannot attach to a container's stdin: the main process of a VM reads /dev/null "
    "(use docker exec -i for input)"
)


def _tail(value: str) -> int | None:
    """Docker's `tail`: a count of lines; "all", a negative or unreadable one means all."""
    try:
        count = int(value)
    except ValueError:
        return None
    return count if count >= 0 else None


def _unset_time(value: str) -> bool:
    return value.strip("0.") == ""


@router.get("/containers/{ref}/logs")
async def logs(
    ref: str,
    request: Request,
    follow: bool = False,
    stdout: bool = False,
    stderr: bool = False,
    timestamps: bool = False,
    tail: str = "all",
    since: str = "0",
    until: str = "0",
) -> Response:
    """The console so far (its last `tail` lines), then with `follow` what comes until
    the VM stops or the client goes away."""
    if not (stdout or stderr):
        raise InvalidArgument("Bad parameters: you must choose at least one stream")
    if timestamps or not _unset_time(since) or not _unset_time(until):
        raise InvalidArgument(NO_TIMES)
    vm = container(daemon_of(request), ref).vm
    tty = vm.spec.tty
    chunks = daemon_of(request).vm_console(vm.id, tail=_tail(tail), follow=follow)
    if tty:
        body = chunks
    elif stdout:
        body = framed(chunks, STDOUT)
    else:  # stderr alone gets none of the console (see above), once it is over
        body = (b"" async for _ in chunks)
    return StreamingResponse(body, media_type=media_type(request, tty))


@router.post("/containers/{ref}/attach")
async def attach(
    ref: str,
    request: Request,
    stream: bool = False,
    stdout: bool = False,
    stderr: bool = False,
    stdin: bool = False,
    logs: bool = False,
) -> Response:
    """Hijacked: the console from now on (all of it with `logs`), with `stream` until the
    run under way or the next one ends (`docker run` attaches before it starts)."""
    if stdin:
        raise InvalidArgument(NO_STDIN)
    vm = container(daemon_of(request), ref).vm
    tty = vm.spec.tty
    chunks = daemon_of(request).vm_attach(vm.id, logs=logs, stream=stream)
    _, writer = await hijack(request, media_type(request, tty))
    output = Output(writer, tty)
    shown = stdout or (tty and stderr)
    pump = asyncio.create_task(_pump(chunks, output if shown else None))
    # A client that went away while nothing was written (the VM not started yet, or
    # silent) is noticed here, not only when the VM stops.
    while not pump.done():
        await asyncio.wait({pump}, timeout=GONE_CHECK_SECONDS)
        if not pump.done() and output.client_gone():
            pump.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await pump
    return Response()


async def _pump(chunks: AsyncIterator[bytes], output: Output | None) -> None:
    async for chunk in chunks:
        if output is not None:
            await output.write("stdout", chunk)
            if output.gone:
                return


@router.post("/containers/{ref}/resize")
async def resize(ref: str, request: Request) -> Response:
    """Accepted and ignored: the main process's terminal is the serial console, which has
    no window size to set (the CLI resizes a `run -t` container in a terminal)."""
    container(daemon_of(request), ref)
    return Response(status_code=200)
