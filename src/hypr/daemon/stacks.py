"""Stacks: a compose project deployed by the daemon, so it outlives the CLI that asked.

A stack has no table of its own: its networks, volumes and VMs carry Docker Compose's
labels (`com.docker.compose.project`, `.service`, `.config-hash`), and everything about it
is derived from them. `up` creates networks and volumes first, then boots services as soon
as the conditions they depend on hold (independent services boot in parallel), and undoes
what it created if a step fails; `down` removes VMs in reverse dependency order, then
networks, and with `volumes` the stack's volumes (named ones outlive a plain `down`).

Both record their intent in `stack_ops` before changing anything and clear it at the end:
a daemon killed in between finds the row at its next start and runs the operation again,
which finishes it (`up` keeps what already matches the file and makes the rest; `down`
removes what is left).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from hypr import faults
from hypr.compose.project import (
    PROJECT_LABEL,
    SERVICE_LABEL,
    HostPaths,
    NetworkPlan,
    Project,
    load_project,
)
from hypr.compose.select import Selection
from hypr.daemon.health import HealthMonitor
from hypr.daemon.requests import NetworkAttachment
from hypr.daemon.stack_deploy import (
    ONEOFF_LABEL,
    ORDER_LABEL,
    UP_CREATED,
    UP_STARTED,
    Deployer,
    Emit,
    number_of,
    run_request,
)
from hypr.daemon.stack_volumes import StackVolumes
from hypr.daemon.vms import VmManager
from hypr.errors import Conflict, HyprError, InvalidArgument
from hypr.network.manager import NetworkManager, NetworkRequest, parse_subnet
from hypr.state.networks import NetworkRecord
from hypr.state.stacks import StackOp, StackOpRepository
from hypr.state.vms import VmRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OneOff:
    """What `compose run` changes of the service's config."""

    command: list[str] | None = None
    entrypoint: list[str] | None = None
    env: list[str] = field(default_factory=list)
    rm: bool = False


# The fault points of `up` and `down` (the crash tests name them from here).
__all__ = [
    "DOWN_REMOVED",
    "UP_CREATED",
    "UP_NETWORK",
    "UP_STARTED",
    "UP_VOLUME",
    "OneOff",
    "StackManager",
]

UP_NETWORK = faults.register("compose.up.network", "up: a network created")
UP_VOLUME = faults.register("compose.up.volume", "up: a volume created")
DOWN_REMOVED = faults.register("compose.down.removed", "down: a service's VM removed")


class StackManager:
    """Deploys and removes compose projects."""

    def __init__(self, vms: VmManager, networks: NetworkManager, ops: StackOpRepository) -> None:
        self.vms = vms
        self.networks = networks
        self.volumes = StackVolumes(vms.volumes)
        self.ops = ops
        self._resuming: set[asyncio.Task[None]] = set()
        self.health = HealthMonitor(vms)
        self._locks: dict[str, asyncio.Lock] = {}

    # --- queries -------------------------------------------------------------------------

    def stack_vms(self, project: str) -> list[VmRecord]:
        """The stack's VMs by dependency order, then replica number (one-off VMs last)."""
        vms = [vm for vm in self.vms.all() if vm.spec.labels.get(PROJECT_LABEL) == project]

        def order(vm: VmRecord) -> tuple[int, int, str]:
            number = number_of(vm)
            return int(vm.spec.labels.get(ORDER_LABEL, "0")), number or 1 << 30, vm.name

        return sorted(vms, key=order)

    def stack_networks(self, project: str) -> list[NetworkRecord]:
        return [n for n in self.networks.all() if n.labels.get(PROJECT_LABEL) == project]

    def projects(self) -> list[str]:
        names = {vm.spec.labels.get(PROJECT_LABEL) for vm in self.vms.all()}
        names |= {n.labels.get(PROJECT_LABEL) for n in self.networks.all()}
        return sorted(name for name in names if name)

    def health_of(self, vm_id: str) -> str | None:
        return self.health.status(vm_id)

    # --- up ------------------------------------------------------------------------------

    async def up(self, project: Project, remove_orphans: bool, emit: Emit) -> None:
        async with self._locks.setdefault(project.name, asyncio.Lock()):
            for warning in project.warnings:
                emit({"warning": warning})
            self._precheck(project)
            args = {
                "document": project.document,
                "remove_orphans": remove_orphans,
                "project_dir": project.paths.project_dir,
                "home": project.paths.home,
                "selection": project.selection.to_dict(),
            }
            self.ops.begin(project.name, "up", args)
            created_networks: list[str] = []
            created_volumes: list[str] = []
            created_vms: list[str] = []
            try:
                for plan in project.networks:
                    if await self._ensure_network(plan, emit):
                        created_networks.append(plan.name)
                        self._reached(project.name, f"network {plan.name} created", UP_NETWORK)
                for volume in project.volumes:
                    if self.volumes.ensure(volume, project.name, emit):
                        created_volumes.append(volume.name)
                        self._reached(project.name, f"volume {volume.name} created", UP_VOLUME)
                deployer = Deployer(
                    self.vms,
                    self.health,
                    self._remove_vm,
                    lambda step, point: self._reached(project.name, step, point),
                )
                await deployer.deploy(project, self.stack_vms(project.name), emit, created_vms)
                await self._orphans(project, remove_orphans, emit)
            except BaseException as exc:
                made = created_vms + created_networks + created_volumes
                emit({"error": _message(exc), "rolling_back": made})
                await self._rollback(created_vms, created_networks, created_volumes, emit)
                raise
            finally:
                self.ops.finish(project.name)

    async def run(self, project: Project, oneoff: OneOff, emit: Emit) -> VmRecord:
        """`compose run`: the stack's networks and the service's dependencies up, then a
        one-off VM with the service's config: no published ports and no service alias (it
        is no replica), `oneoff` labelled so that `up` leaves it alone and `down` takes it."""
        service = project.oneoff
        if service is None:
            raise InvalidArgument("compose run needs the service to run")
        await self.up(project, False, emit)
        request = run_request(service, 1, {ONEOFF_LABEL: "True"})
        networks = [NetworkAttachment(network=a.network) for a in service.networks]
        updates: dict[str, Any] = {
            "name": f"{project.name}-{service.name}-run-{secrets.token_hex(6)}",
            "networks": networks,
            "ports": [],
            "restart": "no",
            "auto_remove": oneoff.rm,
            "env": [*request.env, *oneoff.env],
        }
        if oneoff.command is not None:
            updates["command"] = oneoff.command
        if oneoff.entrypoint is not None:
            updates["entrypoint"] = oneoff.entrypoint
        record = self.vms.create(request.model_copy(update=updates))
        vm = await self.vms.start(record.id)
        emit({"vm": vm.name, "status": "Started"})
        return vm

    def _reached(self, project: str, step: str, point: str) -> None:
        """Note a step of an operation, where a crash test may kill the daemon."""
        self.ops.reached(project, step)
        faults.point(point)

    def resume(self) -> None:
        """Finish, in the background, the operations a killed daemon left half done; each
        holds its stack's lock, so a request for the same stack waits for it."""
        for op in self.ops.pending():
            log.warning(
                "finishing the interrupted %s of stack %s (it had reached: %s)",
                op.op,
                op.project,
                op.step,
            )
            task = asyncio.create_task(self._resume(op))
            self._resuming.add(task)
            task.add_done_callback(self._resuming.discard)

    async def _resume(self, op: StackOp) -> None:
        def emit(event: dict[str, Any]) -> None:
            log.info("stack %s: %s", op.project, event)

        try:
            if op.op == "up":
                paths = HostPaths(op.args.get("project_dir"), op.args.get("home"))
                selection = Selection.from_dict(op.args.get("selection") or {})
                project = load_project(op.args["document"], op.project, paths, selection)
                await self.up(project, op.args["remove_orphans"], emit)
            else:
                services, orphans = op.args["services"], op.args["remove_orphans"]
                await self.down(op.project, services, orphans, op.args.get("volumes", False), emit)
        except Exception as exc:
            log.error("could not finish the %s of stack %s: %s", op.op, op.project, _message(exc))
            self.ops.finish(op.project)

    def _precheck(self, project: Project) -> None:
        """Refuse what would fail half-way, before anything is created (an image that is
        not there: the CLI pulls and builds before it asks for `up`)."""
        for service in [*project.services, *filter(None, [project.oneoff])]:
            self.vms.images.get(service.image)
        self.volumes.precheck(project.volumes)
        own = {n.name for n in self.stack_networks(project.name)}
        for plan in project.networks:
            existing = self.networks.repo.find(plan.name)
            if plan.external:
                if existing is None:
                    raise InvalidArgument(f"external network {plan.name} not found")
                continue
            if existing is not None and existing.name not in own:
                raise Conflict(
                    f"network {plan.name} exists and belongs to no project {project.name}"
                )
            if plan.subnet and existing is None:
                subnet = parse_subnet(plan.subnet)
                for other in self.networks.all():
                    if other.subnet.overlaps(subnet):
                        owner = other.labels.get(PROJECT_LABEL)
                        raise Conflict(
                            f"networks.{plan.key}: subnet {subnet} overlaps with network "
                            f"{other.name} ({other.subnet})"
                            + (f" of stack {owner}" if owner else "")
                        )

    async def _ensure_network(self, plan: NetworkPlan, emit: Emit) -> bool:
        if self.networks.repo.find(plan.name) is not None:
            return False
        await self.networks.create(
            NetworkRequest(
                name=plan.name,
                subnet=plan.subnet,
                gateway=plan.gateway,
                internal=plan.internal,
                labels=plan.labels,
            )
        )
        emit({"network": plan.name, "status": "Created"})
        return True

    async def _orphans(self, project: Project, remove: bool, emit: Emit) -> None:
        names = set(project.known)
        for vm in self.stack_vms(project.name):
            if vm.spec.labels.get(SERVICE_LABEL) in names:
                continue
            if remove:
                await self._remove_vm(vm, emit)
            else:
                emit(_orphan_warning(vm))

    async def _rollback(
        self, vm_ids: list[str], networks: list[str], volumes: list[str], emit: Emit
    ) -> None:
        """Remove what this `up` made: VMs with their anonymous volumes, networks, and
        the volumes it made (new, so only this attempt wrote to them)."""
        for vm_id in reversed(vm_ids):
            with contextlib.suppress(HyprError):
                await self.vms.remove(vm_id, force=True, volumes=True)
                emit({"vm": vm_id[:12], "status": "Removed"})
        for name in reversed(networks):
            with contextlib.suppress(HyprError):
                await self.networks.remove(name, force=True)
                emit({"network": name, "status": "Removed"})
        self.volumes.rollback(volumes, emit)

    # --- down ----------------------------------------------------------------------------

    async def down(
        self,
        project: str,
        services: list[str] | None,
        remove_orphans: bool,
        volumes: bool,
        emit: Emit,
    ) -> None:
        """Remove the stack's VMs (those of `services`, all with `remove_orphans` or when
        the file is unknown), then its networks that no remaining VM uses; with `volumes`
        also the VMs' anonymous volumes and the volumes `up` made for the stack."""
        async with self._locks.setdefault(project, asyncio.Lock()):
            args = {"services": services, "remove_orphans": remove_orphans, "volumes": volumes}
            self.ops.begin(project, "down", args)
            try:
                await self._down(project, services, remove_orphans, volumes, emit)
            finally:
                self.ops.finish(project)

    async def _down(
        self,
        project: str,
        services: list[str] | None,
        remove_orphans: bool,
        volumes: bool,
        emit: Emit,
    ) -> None:
        vms = self.stack_vms(project)
        nets = self.stack_networks(project)
        own_volumes = self.volumes.owned(project) if volumes else []
        if not vms and not nets and not own_volumes:
            emit({"warning": f"stack {project} has nothing to remove"})
        kept = []
        for vm in reversed(vms):
            service = vm.spec.labels.get(SERVICE_LABEL)
            if services is None or remove_orphans or service in services:
                await self._remove_vm(vm, emit, volumes)
                self._reached(project, f"service {service} removed", DOWN_REMOVED)
            else:
                kept.append(vm)
                emit(_orphan_warning(vm))
        used = {nic.network_id for vm in kept for nic in vm.nics}
        for net in nets:
            if net.id not in used:
                await self.networks.remove(net.id)
                emit({"network": net.name, "status": "Removed"})
        self.volumes.remove(own_volumes, emit)

    async def _remove_vm(self, vm: VmRecord, emit: Emit, volumes: bool = False) -> None:
        """Stop and remove a VM; with `volumes`, its anonymous volumes too (`rm -v`)."""
        if vm.state in ("starting", "running", "stopping"):
            await self.vms.stop(vm.id, grace=10)
            emit({"vm": vm.name, "status": "Stopped"})
        self.health.forget(vm.id)
        await self.vms.remove(vm.id, force=True, volumes=volumes)
        emit({"vm": vm.name, "status": "Removed"})


def _orphan_warning(vm: VmRecord) -> dict[str, Any]:
    """What `up` and `down` say of a VM of the stack that they leave alone."""
    service = vm.spec.labels.get(SERVICE_LABEL)
    return {
        "warning": f"found orphan VM {vm.name} (service {service}); "
        "use --remove-orphans to remove it"
    }


def _message(exc: BaseException) -> str:
    return exc.message if isinstance(exc, HyprError) else f"{type(exc).__name__}: {exc}"
