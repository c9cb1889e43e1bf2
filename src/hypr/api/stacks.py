"""/stacks: compose projects held by the daemon (the seeds' DeployStack)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from hypr.api.deps import daemon_of
from hypr.api.models import StackDownRequest, StackRunRequest, StackUpRequest, StackView
from hypr.api.vms import vm_view
from hypr.compose.project import SERVICE_LABEL, HostPaths, Project, load_project
from hypr.compose.select import Selection
from hypr.daemon.stack_deploy import Emit, number_of
from hypr.daemon.stacks import OneOff

router = APIRouter(prefix="/stacks", tags=["stacks"])


def _stream(work: Callable[[Emit], Awaitable[None]]) -> StreamingResponse:
    """Run `work` as a daemon task (it goes on if the client hangs up) and stream its
    progress events as NDJSON; the last line is {"done": true} or {"error": ...}."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def run() -> None:
        try:
            await work(queue.put_nowait)
            queue.put_nowait({"done": True})
        except Exception as exc:
            message = getattr(exc, "message", None) or str(exc)
            queue.put_nowait({"error": message, "final": True})

    task = asyncio.create_task(run())

    async def lines() -> AsyncIterator[bytes]:
        while True:
            event = await queue.get()
            yield (json.dumps(event) + "\n").encode()
            if event.get("done") or event.get("final"):
                await task
                return

    return StreamingResponse(lines(), media_type="application/x-ndjson")


def _project(name: str, body: StackUpRequest, run: str | None = None) -> Project:
    selection = Selection(
        profiles=tuple(body.profiles),
        services=(run,) if run else tuple(body.services),
        scale=body.scale,
        no_deps=body.no_deps,
        run=run,
    )
    return load_project(body.document, name, HostPaths(body.project_dir, body.home), selection)


@router.post("/{name}/config")
async def stack_config(name: str, body: StackUpRequest) -> dict[str, Any]:
    """Validate and normalise a compose document without deploying it."""
    project = _project(name, body)
    return {"config": project.to_dict(), "warnings": project.warnings}


@router.post("/{name}/up")
async def stack_up(name: str, body: StackUpRequest, request: Request) -> StreamingResponse:
    project = _project(name, body)  # bad files answer 400 before any stream
    stacks = daemon_of(request).stacks
    return _stream(lambda emit: stacks.up(project, body.remove_orphans, emit))


@router.post("/{name}/run")
async def stack_run(name: str, body: StackRunRequest, request: Request) -> StreamingResponse:
    """The service's dependencies up, then its one-off VM; the last event before `done`
    is `{"run": VM_ID}`."""
    project = _project(name, body, run=body.service)
    stacks = daemon_of(request).stacks
    oneoff = OneOff(body.command, body.entrypoint, body.env, body.rm)

    async def work(emit: Emit) -> None:
        vm = await stacks.run(project, oneoff, emit)
        emit({"run": vm.id})

    return _stream(work)


@router.post("/{name}/down")
async def stack_down(name: str, body: StackDownRequest, request: Request) -> StreamingResponse:
    stacks = daemon_of(request).stacks
    return _stream(
        lambda emit: stacks.down(name, body.services, body.remove_orphans, body.volumes, emit)
    )


@router.get("")
async def list_stacks(request: Request) -> list[StackView]:
    daemon = daemon_of(request)
    return [_stack_view(request, name) for name in daemon.stacks.projects()]


@router.get("/{name}")
async def inspect_stack(name: str, request: Request) -> StackView:
    return _stack_view(request, name)


def _stack_view(request: Request, name: str) -> StackView:
    daemon = daemon_of(request)
    stacks = daemon.stacks
    vms = stacks.stack_vms(name)
    return StackView(
        name=name,
        vms=[
            {
                **vm_view(daemon.vm_details(vm)).model_dump(),
                "service": vm.spec.labels.get(SERVICE_LABEL, vm.name),
                "number": number_of(vm),
                "health": stacks.health_of(vm.id),
            }
            for vm in vms
        ],
        networks=[n.name for n in stacks.stack_networks(name)],
        status=_status(vm.state for vm in vms),
    )


def _status(states: Any) -> str:
    counts: dict[str, int] = {}
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    return ", ".join(f"{state}({count})" for state, count in sorted(counts.items())) or "empty"
