"""Docker's exec: `POST /containers/{id}/exec`, `POST /exec/{id}/start` (hijacked unless
detached), `GET /exec/{id}/json` and `POST /exec/{id}/resize`, over the guest agent's exec
sessions (with a pty for `Tty`).

Clients read the exit code from `/exec/{id}/json` once the stream has ended, so the
stream is closed only after the exit code is recorded. A client that goes away does not
end the process (Docker's behaviour); its output is read and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from hypr.api.deps import daemon_of
from hypr.api.docker.containers import container
from hypr.api.docker.streams import Output, hijacker, media_type
from hypr.checks import check_user
from hypr.daemon.execs import ExecConfig, ExecInstance
from hypr.errors import InvalidArgument
from hypr.guest.protocol import ExecSession
from hypr.guest.wire import AgentDisconnected, TtySize

router = APIRouter(tags=["docker exec"])
READ_SIZE = 65536


class ExecCreate(BaseModel):
    """Docker's ExecConfig; fields hypr has no use for are ignored, as Docker does."""

    model_config = ConfigDict(extra="ignore")

    Cmd: list[str] | None = None
    Env: list[str] | None = None
    WorkingDir: str | None = None
    User: str | None = None
    Tty: bool = False
    AttachStdin: bool = False
    AttachStdout: bool = False
    AttachStderr: bool = False
    Privileged: bool = False
    ConsoleSize: list[int] | None = Field(default=None, description="[height, width]")


class ExecStart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    Detach: bool = False
    Tty: bool = False
    ConsoleSize: list[int] | None = None


def _size(value: list[int] | None) -> TtySize | None:
    """Docker's `[height, width]`; a zero (a client without a terminal) means no size."""
    if not value:
        return None
    if len(value) != 2:
        raise InvalidArgument("ConsoleSize must be [height, width]")
    if 0 in value:
        return None
    try:
        return TtySize(value[0], value[1])
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None


@router.post("/containers/{ref}/exec", status_code=201)
async def exec_create(ref: str, body: ExecCreate, request: Request) -> dict[str, str]:
    if body.Privileged:
        raise InvalidArgument("hypr cannot run a privileged exec: a VM has no such mode")
    if not body.Cmd:
        raise InvalidArgument("No exec command specified")
    config = ExecConfig(
        argv=tuple(body.Cmd),
        env=tuple(body.Env or ()),
        workdir=body.WorkingDir or None,
        user=check_user(body.User) if body.User else None,
        tty=body.Tty,
        stdin=body.AttachStdin,
        stdout=body.AttachStdout,
        stderr=body.AttachStderr,
    )
    daemon = daemon_of(request)
    vm_id = container(daemon, ref).vm.id
    return {"Id": daemon.exec_create(vm_id, config, _size(body.ConsoleSize)).id}


@router.post("/exec/{exec_id}/start")
async def exec_start(
    exec_id: str, request: Request, body: Annotated[ExecStart | None, Body()] = None
) -> Response:
    """Hijacked unless `Detach`: the output framed (raw with a TTY), stdin from the
    connection when the exec attached it, and the connection closed after the exit."""
    start = body or ExecStart()
    take = None if start.Detach else hijacker(request)
    daemon = daemon_of(request)
    size = _size(start.ConsoleSize)
    if size is not None:
        await daemon.exec_resize(exec_id, size)
    instance = await daemon.exec_start(exec_id, detach=start.Detach)
    if take is None:
        return Response(status_code=200)
    reader, writer = await take(media_type(request, instance.config.tty))
    tty = instance.config.tty
    session = instance.session
    assert session is not None
    feed = asyncio.create_task(_feed_stdin(reader, session)) if instance.config.stdin else None
    try:
        await _pump_output(instance, session, Output(writer, tty))
        await instance.done.wait()  # the exit code is recorded before the stream ends
    finally:
        if feed is not None:
            feed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feed
    return Response()


async def _pump_output(instance: ExecInstance, session: ExecSession, output: Output) -> None:
    wanted = {"stdout": instance.config.stdout, "stderr": instance.config.stderr}
    with contextlib.suppress(AgentDisconnected):
        async for stream, data in session:
            if wanted[stream] or instance.config.tty:
                await output.write(stream, data)


async def _feed_stdin(reader: asyncio.StreamReader, session: ExecSession) -> None:
    """The connection's bytes to the process's stdin; EOF (the client's half-close) closes
    it. A process that ended no longer takes any: that is not an error."""
    with contextlib.suppress(AgentDisconnected, ValueError, ConnectionError):
        while data := await reader.read(READ_SIZE):
            await session.write_stdin(data)
        await session.close_stdin()


@router.get("/exec/{exec_id}/json")
async def exec_inspect(exec_id: str, request: Request) -> dict[str, Any]:
    instance = daemon_of(request).exec_instance(exec_id)
    config = instance.config
    return {
        "ID": instance.id,
        "Running": instance.running,
        "ExitCode": instance.exit_code,
        "ProcessConfig": {
            "tty": config.tty,
            "entrypoint": config.argv[0],
            "arguments": list(config.argv[1:]),
            "privileged": False,
            "user": config.user or "",
        },
        "OpenStdin": config.stdin,
        "OpenStderr": config.stderr,
        "OpenStdout": config.stdout,
        "CanRemove": False,
        "ContainerID": instance.vm_id,
        "DetachKeys": "",
        "Pid": 0,  # the agent does not report the guest pid of an exec
    }


@router.post("/exec/{exec_id}/resize")
async def exec_resize(
    exec_id: str,
    request: Request,
    h: Annotated[int, Query(ge=0, le=0xFFFF)] = 0,
    w: Annotated[int, Query(ge=0, le=0xFFFF)] = 0,
) -> Response:
    """Honoured for a TTY exec (its pty gets the size; before the start, it is kept for
    then); accepted and ignored without a TTY, as there is no window to size."""
    size = _size([h, w])
    if size is None:
        daemon_of(request).exec_instance(exec_id)  # an unknown exec is still a 404
    else:
        await daemon_of(request).exec_resize(exec_id, size)
    return Response(status_code=200)
