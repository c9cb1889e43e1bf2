"""/vms: run, list, inspect, start, stop, remove, logs, wait and exec."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from hypr.api.deps import daemon_of
from hypr.api.hatch import HATCH_NETWORK, HatchVmRequest, hatch_run_request
from hypr.api.models import (
    ExecRequest,
    ExecResponse,
    MountView,
    NicView,
    PortView,
    VmView,
    WaitResponse,
)
from hypr.api.registry import registry_auth
from hypr.daemon.requests import RunRequest
from hypr.daemon.service import MAX_STOP_TIMEOUT, Daemon
from hypr.daemon.views import VmDetails
from hypr.errors import HyprError, NotFound
from hypr.guest.protocol import ExecSession
from hypr.guest.wire import AgentDisconnected

router = APIRouter(tags=["vms"])


def vm_view(details: VmDetails) -> VmView:
    vm = details.vm
    nics = [
        NicView(
            network=nic.network,
            network_id=nic.network_id,
            ip=str(nic.ip) if nic.ip else None,
            prefix_len=nic.prefix_len,
            gateway=str(nic.gateway) if nic.gateway else None,
            mac=nic.mac,
            tap=nic.tap,
        )
        for nic in details.nics
    ]
    first = nics[0] if nics else None
    return VmView(
        id=vm.id,
        name=vm.name,
        image=vm.image,
        state=vm.state,
        pid=vm.pid,
        exit_code=vm.exit_code,
        error=vm.error,
        restarts=vm.restarts,
        created=vm.created,
        started_at=vm.started_at,
        finished_at=vm.finished_at,
        command=vm.spec.argv,
        env=vm.spec.env,
        workdir=vm.spec.workdir,
        user=vm.spec.user,
        stop_signal=vm.spec.stop_signal,
        vcpus=vm.spec.vcpus,
        memory_mib=vm.spec.memory_mib,
        restart=vm.spec.restart,
        auto_remove=vm.spec.auto_remove,
        dhcp=vm.spec.dhcp,
        labels=vm.spec.labels,
        enable_network=bool(nics),
        guest_ip=first.ip if first else None,
        guest_mac=first.mac if first else None,
        tap_name=first.tap if first else None,
        networks=nics,
        exposed_ports=vm.spec.exposed_ports,
        ports=[
            PortView(
                protocol=fwd.protocol,
                host_ip=str(fwd.host_ip),
                host_port=fwd.host_port,
                guest_port=fwd.guest_port,
            )
            for fwd in details.forwards
        ],
        ssh_port=details.ssh_port,
        log_path=str(details.log_path),
        mounts=[
            MountView(
                type=m.type, source=m.source, target=m.target, read_only=m.read_only,
                host_path=path,
            )
            for m, path in zip(vm.spec.mounts, details.mount_paths, strict=True)
        ],
    )  # fmt: skip


@router.post("/vms", status_code=201)
async def run_vm(
    body: Annotated[dict[str, Any], Body()],
    request: Request,
    x_registry_auth: Annotated[str | None, Header()] = None,
) -> VmView:
    """The body is the daemon's RunRequest itself; `start: false` only creates. A missing
    image is pulled first as `pull` says, with the credentials of `X-Registry-Auth`. A
    body without `image` is Hatch's (api/hatch.py)."""
    daemon = daemon_of(request)
    try:
        hatch = HatchVmRequest.model_validate(body) if "image" not in body else None
        run = (
            hatch_run_request(hatch, daemon.settings.default_image)
            if hatch is not None
            else RunRequest.model_validate(body)
        )
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
    if hatch is not None and hatch.enable_network:
        return vm_view(await daemon.run_on_network(run, HATCH_NETWORK))
    return vm_view(await daemon.run_vm(run, registry_auth(x_registry_auth)))


@router.get("/vms")
async def list_vms(request: Request, all: bool = False) -> list[VmView]:
    return [vm_view(details) for details in daemon_of(request).vm_views(all)]


@router.get("/vms/")
async def inspect_empty_ref() -> VmView:
    """An empty reference names no VM (instead of redirecting to the list)."""
    raise NotFound("no such VM: ''")


@router.get("/vms/{ref}")
async def inspect_vm(ref: str, request: Request) -> VmView:
    return vm_view(daemon_of(request).vm_view(ref))


@router.post("/vms/{ref}/start")
async def start_vm(ref: str, request: Request, snapshot: str | None = None) -> VmView:
    """Boot a VM (a sleeping one wakes); with `snapshot` it resumes from that snapshot."""
    return vm_view(await daemon_of(request).start_vm(ref, snapshot))


@router.post("/vms/{ref}/stop")
async def stop_vm(
    ref: str,
    request: Request,
    grace: Annotated[float, Query(alias="timeout", ge=0, le=MAX_STOP_TIMEOUT)] = 10,
) -> VmView:
    """`?timeout=` (Docker's name) is a grace period, seconds before SIGKILL: no deadline."""
    return vm_view(await daemon_of(request).stop_vm(ref, grace))


@router.post("/vms/{ref}/wait")
async def wait_vm(ref: str, request: Request) -> WaitResponse:
    return WaitResponse(exit_code=await daemon_of(request).wait_vm(ref))


@router.delete("/vms/{ref}", status_code=204)
async def remove_vm(ref: str, request: Request, force: bool = False, v: bool = False) -> None:
    """`v`: remove the VM's anonymous volumes too (Docker's name for the flag)."""
    await daemon_of(request).remove_vm(ref, force=force, volumes=v)


@router.get("/vms/{ref}/logs")
async def vm_logs(
    ref: str, request: Request, follow: bool = False, kernel: bool = False
) -> StreamingResponse:
    """The serial console. The workload's output is shown; the kernel's own lines (with
    their printk timestamp) only with `kernel`. `follow` streams until the VM exits."""
    chunks = daemon_of(request).vm_console(ref, kernel=kernel, follow=follow)
    return StreamingResponse(chunks, media_type="text/plain")


@router.post("/vms/{ref}/exec")
async def exec_vm(ref: str, body: ExecRequest, request: Request) -> ExecResponse:
    """Run a command to completion and return its output (for scripts and healthchecks)."""
    result = await daemon_of(request).exec_vm(
        ref, body.command, body.env, body.workdir, body.stdin.encode(), body.user
    )
    return ExecResponse(
        exit_code=result.exit_code,
        stdout=result.stdout.decode(errors="replace"),
        stderr=result.stderr.decode(errors="replace"),
    )


@router.websocket("/vms/{ref}/exec/ws")
async def exec_stream(ref: str, websocket: WebSocket) -> None:
    """Interactive exec. The client sends one JSON text frame {command, env, workdir,
    interactive}, then binary stdin frames and text frames {"stdin_eof": true} or
    {"signal": N}; the server sends binary frames whose first byte is 1 (stdout) or 2
    (stderr), then one text frame {"exit_code": N} or {"message": ...}, and closes."""
    await websocket.accept()
    session = await _open_exec(ref, websocket)
    if session is None:
        await websocket.close()
        return
    inputs = asyncio.create_task(_pump_exec_input(websocket, session))
    try:
        async for stream, data in session:
            await websocket.send_bytes((b"\x01" if stream == "stdout" else b"\x02") + data)
        await websocket.send_json({"exit_code": await session.wait()})
    except AgentDisconnected as exc:
        await websocket.send_json({"message": str(exc)})
    except WebSocketDisconnect:
        return
    finally:
        inputs.cancel()
    await websocket.close()


async def _open_exec(ref: str, websocket: WebSocket) -> ExecSession | None:
    """Read the start frame and open the session; on failure tell the client why."""
    daemon: Daemon = websocket.app.state.daemon
    try:
        start = ExecRequest.model_validate(await websocket.receive_json())
        agent = await daemon.vm_agent(ref)
        return await agent.open_exec(
            start.command, start.env, start.workdir, start.interactive, start.user
        )
    except (HyprError, ValueError, AgentDisconnected) as exc:
        message = exc.message if isinstance(exc, HyprError) else str(exc)
        await websocket.send_json({"message": message})
        return None


async def _pump_exec_input(websocket: WebSocket, session: ExecSession) -> None:
    """Forward the client's stdin and controls; a client that goes away SIGKILLs the process."""
    with contextlib.suppress(WebSocketDisconnect, AgentDisconnected, ValueError):
        while True:
            message = await websocket.receive()
            if message.get("bytes") is not None:
                await session.write_stdin(message["bytes"])
            elif message.get("text") is not None:
                await _exec_control(session, json.loads(message["text"]))
            elif message["type"] == "websocket.disconnect":
                await session.signal(9)
                return


async def _exec_control(session: ExecSession, control: dict[str, Any]) -> None:
    if control.get("stdin_eof"):
        await session.close_stdin()
    if "signal" in control:
        await session.signal(int(control["signal"]))
