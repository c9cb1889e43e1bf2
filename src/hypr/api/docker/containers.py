"""Docker's `/containers` on hypr's VMs: create, start, stop, restart, kill, wait, remove,
list, inspect, rename, top and prune. A container is a VM; the daemon's VM manager does the
work, as for hypr's own API (the body translation is in container_create.py, the shapes in
container_views.py).

`wait` answers its headers at once and its body when the condition is met, as Docker does:
`docker run -d` sends it on a connection of its own before `start` and never reads it, so a
client that goes away ends the wait (and its future) without leaving anything behind.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from hypr.api.deps import daemon_of
from hypr.api.docker.container_create import ContainerCreate, run_request
from hypr.api.docker.container_filters import LIST_FILTERS, PRUNE_FILTERS, prunable, selector
from hypr.api.docker.container_views import docker_state, exit_status, inspect_view, list_item
from hypr.api.docker.filters import parse_filters
from hypr.api.docker.versions import at_least
from hypr.checks import signal_number
from hypr.daemon.containers import WAIT_CONDITIONS
from hypr.daemon.service import MAX_STOP_TIMEOUT, Daemon
from hypr.daemon.views import VmDetails
from hypr.errors import Conflict, HyprError, InvalidArgument, NotFound
from hypr.images.reference import parse_reference

router = APIRouter(prefix="/containers", tags=["docker containers"])
DEFAULT_STOP_TIMEOUT = 10


def container(daemon: Daemon, ref: str) -> VmDetails:
    """The VM a container reference names (full id, unique id prefix, name or `/name`),
    or Docker's 404."""
    try:
        return daemon.vm_view(ref.removeprefix("/"))
    except NotFound:
        raise NotFound(f"No such container: {ref}") from None


def _name_free(daemon: Daemon, name: str) -> None:
    holder = daemon.container_named(name)
    if holder is not None:
        raise Conflict(
            f'Conflict. The container name "/{name}" is already in use by container '
            f'"{holder.id}". You have to remove (or rename) that container to be able to '
            "reuse that name."
        )


def _short_id_alias(request: Request) -> bool:
    """Docker listed the short id among a network's aliases until API 1.45."""
    return not at_least(request, "1.45")


@router.post("/create", status_code=201)
async def create(
    body: ContainerCreate, request: Request, name: str | None = None
) -> dict[str, Any]:
    """A VM created, not started. A missing image is Docker's 404, on which the docker CLI
    pulls it (`/images/create`) and creates again."""
    daemon = daemon_of(request)
    req, warnings = run_request(body, name)
    try:
        daemon.image(req.image)
    except NotFound:
        raise NotFound(f"No such image: {parse_reference(req.image).familiar}") from None
    if req.name:
        _name_free(daemon, req.name)
    details = daemon.create_container(req)
    return {"Id": details.vm.id, "Warnings": warnings}


@router.get("/json")
async def list_containers(
    request: Request, all: bool = False, limit: int | None = None, filters: str | None = None
) -> list[dict[str, Any]]:
    """Newest first; `limit` (the N newest, running or not) implies `all`, as in Docker."""
    daemon = daemon_of(request)
    wanted = parse_filters(filters, LIST_FILTERS)
    limited = limit is not None and limit > 0
    selected = selector(
        wanted, lambda ref: _image_id(daemon, ref), lambda ref: container(daemon, ref).vm.created
    )
    found = [c for c in daemon.container_views(all or limited) if selected(c)]
    if limited:
        found = found[:limit]
    alias = _short_id_alias(request)
    return [list_item(c, alias) for c in found]


def _image_id(daemon: Daemon, ref: str) -> str:
    try:
        return daemon.image(ref).id
    except HyprError:
        return ""


@router.get("/{ref}/json")
async def inspect(ref: str, request: Request) -> dict[str, Any]:
    daemon = daemon_of(request)
    return inspect_view(
        daemon.container_view(container(daemon, ref).vm.id), _short_id_alias(request)
    )


@router.post("/{ref}/start")
async def start(ref: str, request: Request) -> Response:
    """204, or 304 for a container that runs already."""
    daemon = daemon_of(request)
    vm = container(daemon, ref).vm
    if docker_state(vm) == "running":
        return Response(status_code=304)
    await daemon.start_vm(vm.id)
    return Response(status_code=204)


@router.post("/{ref}/stop")
async def stop(
    ref: str, request: Request, t: int | None = None, signal: str | None = None
) -> Response:
    """204, or 304 for a container that is not running. `t`: seconds before SIGKILL (the
    container's StopTimeout, else 10; -1: as long as hypr waits at most)."""
    daemon = daemon_of(request)
    vm = container(daemon, ref).vm
    _check_stop_signal(signal, vm.spec.stop_signal)
    if docker_state(vm) != "running":
        return Response(status_code=304)
    await daemon.stop_vm(vm.id, _grace(t, vm.spec.stop_timeout))
    return Response(status_code=204)


@router.post("/{ref}/restart")
async def restart(
    ref: str, request: Request, t: int | None = None, signal: str | None = None
) -> Response:
    daemon = daemon_of(request)
    vm = container(daemon, ref).vm
    _check_stop_signal(signal, vm.spec.stop_signal)
    await daemon.restart_container(vm.id, _grace(t, vm.spec.stop_timeout))
    return Response(status_code=204)


def _grace(t: int | None, stop_timeout: int | None) -> float:
    if t is None:
        return float(stop_timeout if stop_timeout is not None else DEFAULT_STOP_TIMEOUT)
    if t < 0:
        return MAX_STOP_TIMEOUT
    return float(min(t, MAX_STOP_TIMEOUT))


def _check_stop_signal(signal: str | None, own: str | None) -> None:
    """A VM is stopped with its own stop signal (the agent sends it); another one is
    refused rather than silently replaced."""
    if signal and signal_number(signal) != signal_number(own or "SIGTERM"):
        raise InvalidArgument(
            f"stopping with {signal} is not supported: a VM stops with its StopSignal "
            f"({own or 'SIGTERM'}); use kill to send another signal"
        )


@router.post("/{ref}/kill")
async def kill(ref: str, request: Request, signal: str = "SIGKILL") -> Response:
    """SIGKILL powers the VM off (exit 137, no restart); another signal goes to the
    workload's process group."""
    daemon = daemon_of(request)
    vm = container(daemon, ref).vm
    signum = signal_number(signal)
    if docker_state(vm) != "running":
        raise Conflict(f"Cannot kill container: {ref}: Container {vm.id} is not running")
    await daemon.kill_container(vm.id, signum)
    return Response(status_code=204)


@router.post("/{ref}/wait")
async def wait(ref: str, request: Request, condition: str = "not-running") -> StreamingResponse:
    """`{"StatusCode": N, "Error": null}` once the condition is met; a VM that died without
    its workload's exit code has an Error (the docker CLI then exits 125)."""
    daemon = daemon_of(request)
    vm = container(daemon, ref).vm
    condition = condition or "not-running"
    if condition not in WAIT_CONDITIONS:
        raise InvalidArgument(f"invalid condition {condition!r}: use {', '.join(WAIT_CONDITIONS)}")

    async def answer() -> AsyncIterator[bytes]:
        try:
            exit = await daemon.wait_container(vm.id, condition)
            code, error = exit.code, exit.error
        except HyprError as exc:  # removed before the wait began
            code, error = None, exc.message
        message = {"Message": error} if code is None and error else None
        yield json.dumps({"StatusCode": exit_status(code, error), "Error": message}).encode()

    return StreamingResponse(answer(), media_type="application/json")


@router.delete("/{ref}", status_code=204)
async def remove(ref: str, request: Request, force: bool = False, v: bool = False) -> None:
    """`v`: the container's anonymous volumes go too."""
    daemon = daemon_of(request)
    vm = container(daemon, ref).vm
    if docker_state(vm) == "running" and not force:
        raise Conflict(
            f"You cannot remove a running container {vm.id}. Stop the container before "
            "attempting removal or force remove"
        )
    await daemon.remove_vm(vm.id, force=force, volumes=v)


@router.post("/{ref}/rename", status_code=204)
async def rename(ref: str, request: Request, name: str) -> None:
    daemon = daemon_of(request)
    vm = container(daemon, ref).vm
    new = name.removeprefix("/")
    _name_free(daemon, new)
    await daemon.rename_container(vm.id, new)


@router.get("/{ref}/top")
async def top(ref: str, request: Request, ps_args: str = "-ef") -> dict[str, Any]:
    """`ps` in the guest (the image must have one), without the agent and kernel threads."""
    daemon = daemon_of(request)
    vm = container(daemon, ref).vm
    if docker_state(vm) != "running":
        raise Conflict(f"Container {vm.id} is not running")
    titles, processes = await daemon.top_container(vm.id, ps_args)
    return {"Titles": titles, "Processes": processes}


@router.post("/prune")
async def prune(request: Request, filters: str | None = None) -> dict[str, Any]:
    """Every container that is not running (with `label`, `label!`, `until` filters)."""
    wanted = parse_filters(filters, PRUNE_FILTERS)
    removed = await daemon_of(request).prune_containers(prunable(wanted))
    return {"ContainersDeleted": removed, "SpaceReclaimed": 0}
