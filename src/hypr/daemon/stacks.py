"""Stacks: a compose project deployed by the daemon, so it outlives the CLI that asked.

A stack has no table of its own: its networks and VMs carry Docker Compose's labels
(`com.docker.compose.project`, `.service`, `.config-hash`), and everything about it is
derived from them. `up` creates networks first, then boots services as soon as the
conditions they depend on hold (independent services boot in parallel), and undoes what it
created if a step fails; `down` removes VMs in reverse dependency order, then networks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypr.compose.project import (
    HASH_LABEL,
    PROJECT_LABEL,
    SERVICE_LABEL,
    NetworkPlan,
    Project,
    ServicePlan,
)
from hypr.daemon.vms import NetworkAttachment, RunRequest, VmManager
from hypr.errors import Conflict, HyprError, InvalidArgument
from hypr.network.manager import NetworkManager, NetworkRequest, parse_subnet
from hypr.state.networks import NetworkRecord
from hypr.state.vms import VmRecord

log = logging.getLogger(__name__)

ORDER_LABEL = "com.hypr.compose.order"
Emit = Callable[[dict[str, Any]], None]


@dataclass
class Health:
    """A healthcheck's state, as `docker ps` shows it."""

    status: str = "starting"  # starting | healthy | unhealthy
    failures: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class StackManager:
    """Deploys and removes compose projects."""

    def __init__(self, vms: VmManager, networks: NetworkManager) -> None:
        self.vms = vms
        self.networks = networks
        self.health: dict[str, Health] = {}  # by VM id
        self._monitors: dict[str, asyncio.Task[None]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    # --- queries -------------------------------------------------------------------------

    def stack_vms(self, project: str) -> list[VmRecord]:
        vms = [vm for vm in self.vms.all() if vm.spec.labels.get(PROJECT_LABEL) == project]
        return sorted(vms, key=lambda vm: int(vm.spec.labels.get(ORDER_LABEL, "0")))

    def stack_networks(self, project: str) -> list[NetworkRecord]:
        return [n for n in self.networks.all() if n.labels.get(PROJECT_LABEL) == project]

    def projects(self) -> list[str]:
        names = {vm.spec.labels.get(PROJECT_LABEL) for vm in self.vms.all()}
        names |= {n.labels.get(PROJECT_LABEL) for n in self.networks.all()}
        return sorted(name for name in names if name)

    def health_of(self, vm_id: str) -> str | None:
        health = self.health.get(vm_id)
        return health.status if health else None

    # --- up ------------------------------------------------------------------------------

    async def up(self, project: Project, remove_orphans: bool, emit: Emit) -> None:
        async with self._locks.setdefault(project.name, asyncio.Lock()):
            for warning in project.warnings:
                emit({"warning": warning})
            self._precheck(project)
            created_networks: list[str] = []
            created_vms: list[str] = []
            try:
                for plan in project.networks:
                    if await self._ensure_network(plan, emit):
                        created_networks.append(plan.name)
                await self._deploy_services(project, emit, created_vms)
                await self._orphans(project, remove_orphans, emit)
            except BaseException as exc:
                emit({"error": _message(exc), "rolling_back": created_vms + created_networks})
                await self._rollback(created_vms, created_networks, emit)
                raise

    def _precheck(self, project: Project) -> None:
        """Refuse what would fail half-way, before anything is created."""
        for service in project.services:
            self.vms.images.get(service.image)
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

    async def _deploy_services(self, project: Project, emit: Emit, created: list[str]) -> None:
        existing = {vm.spec.labels.get(SERVICE_LABEL): vm for vm in self.stack_vms(project.name)}
        started: dict[str, asyncio.Future[VmRecord]] = {
            s.name: asyncio.get_running_loop().create_future() for s in project.services
        }

        async def deploy(index: int, service: ServicePlan) -> None:
            for dep, condition in service.depends_on.items():
                vm = await asyncio.shield(started[dep])
                await self._wait_condition(dep, vm, condition, emit)
            vm = await self._converge(index, service, existing.get(service.name), emit, created)
            started[service.name].set_result(vm)

        tasks = [asyncio.create_task(deploy(i, s)) for i, s in enumerate(project.services)]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for future in started.values():
                if future.done() and not future.cancelled():
                    future.exception()
                else:
                    future.cancel()
            raise

    async def _converge(
        self,
        index: int,
        service: ServicePlan,
        current: VmRecord | None,
        emit: Emit,
        created: list[str],
    ) -> VmRecord:
        """Make one service's VM match the file; an unchanged running VM is left alone."""
        wanted = service.config_hash
        if current is not None:
            if current.spec.labels.get(HASH_LABEL) == wanted:
                if current.state in ("running", "starting"):
                    emit({"vm": current.name, "status": "Running"})
                    self._monitor(current, service)
                    return current
                vm = await self.vms.start(current.id)
                emit({"vm": vm.name, "status": "Started"})
                self._monitor(vm, service)
                return vm
            emit({"vm": current.name, "status": "Recreate"})
            await self.vms.remove(current.id, force=True)
        request = _run_request(index, service, wanted)
        emit({"vm": service.vm_name, "status": "Creating"})
        record = self.vms.create(request)
        created.append(record.id)
        vm = await self.vms.start(record.id)
        emit({"vm": vm.name, "status": "Started"})
        self._monitor(vm, service)
        return vm

    async def _wait_condition(self, service: str, vm: VmRecord, condition: str, emit: Emit) -> None:
        if condition == "service_healthy":
            health = self.health.get(vm.id)
            if health is None:
                raise InvalidArgument(
                    f"service {service} has no healthcheck, so it cannot become healthy"
                )
            while health.status != "healthy":
                if health.status == "unhealthy":
                    raise HyprError(f"service {service} is unhealthy")
                health.changed.clear()
                await health.changed.wait()
            emit({"vm": vm.name, "status": "Healthy"})
        elif condition == "service_completed_successfully":
            code = await self.vms.wait(vm.id)
            if code != 0:
                raise HyprError(f"service {service} didn't complete successfully: exit {code}")
            emit({"vm": vm.name, "status": "Exited"})

    def _monitor(self, vm: VmRecord, service: ServicePlan) -> None:
        if service.healthcheck is None or vm.id in self._monitors:
            return
        self.health[vm.id] = Health()
        self._monitors[vm.id] = asyncio.create_task(self._healthcheck(vm.id, service))

    async def _healthcheck(self, vm_id: str, service: ServicePlan) -> None:
        """Run the healthcheck through exec in the guest, as Docker does in the container."""
        check = service.healthcheck or {}
        health = self.health[vm_id]
        loop = asyncio.get_running_loop()
        started = loop.time()
        test = check["test"]
        argv = ["/bin/sh", "-c", test[1]] if test[0] == "CMD-SHELL" else test[1:]
        try:
            while vm_id in self.vms.running:
                in_start_period = loop.time() - started < check["start_period"]
                try:
                    result = await asyncio.wait_for(
                        self.vms.exec(vm_id, argv, [], None, b""), check["timeout"]
                    )
                    ok = result.exit_code == 0
                except (HyprError, TimeoutError, ConnectionError):
                    ok = False
                status = health.status
                if ok:
                    health.failures, status = 0, "healthy"
                elif not in_start_period:
                    health.failures += 1
                    if health.failures >= check["retries"]:
                        status = "unhealthy"
                if status != health.status:
                    health.status = status
                    health.changed.set()
                await asyncio.sleep(
                    check["start_interval"] if in_start_period and not ok else check["interval"]
                )
        finally:
            self._monitors.pop(vm_id, None)
            if health.status == "starting":
                health.status = "unhealthy"
                health.changed.set()

    async def _orphans(self, project: Project, remove: bool, emit: Emit) -> None:
        names = {s.name for s in project.services}
        for vm in self.stack_vms(project.name):
            if vm.spec.labels.get(SERVICE_LABEL) in names:
                continue
            if remove:
                await self._remove_vm(vm, emit)
            else:
                emit(
                    {
                        "warning": f"found orphan VM {vm.name} (service "
                        f"{vm.spec.labels.get(SERVICE_LABEL)}); "
                        "use --remove-orphans to remove it"
                    }
                )

    async def _rollback(self, vm_ids: list[str], networks: list[str], emit: Emit) -> None:
        for vm_id in reversed(vm_ids):
            with contextlib.suppress(HyprError):
                await self.vms.remove(vm_id, force=True)
                emit({"vm": vm_id[:12], "status": "Removed"})
        for name in reversed(networks):
            with contextlib.suppress(HyprError):
                await self.networks.remove(name, force=True)
                emit({"network": name, "status": "Removed"})

    # --- down ----------------------------------------------------------------------------

    async def down(
        self, project: str, services: list[str] | None, remove_orphans: bool, emit: Emit
    ) -> None:
        """Remove the stack's VMs (those of `services`, all with `remove_orphans` or when
        the file is unknown), then its networks that no remaining VM uses."""
        async with self._locks.setdefault(project, asyncio.Lock()):
            vms = self.stack_vms(project)
            nets = self.stack_networks(project)
            if not vms and not nets:
                emit({"warning": f"stack {project} has nothing to remove"})
            kept = []
            for vm in reversed(vms):
                service = vm.spec.labels.get(SERVICE_LABEL)
                if services is None or remove_orphans or service in services:
                    await self._remove_vm(vm, emit)
                else:
                    kept.append(vm)
                    emit(
                        {
                            "warning": f"found orphan VM {vm.name} (service {service}); "
                            "use --remove-orphans to remove it"
                        }
                    )
            used = {nic.network_id for vm in kept for nic in vm.nics}
            for net in nets:
                if net.id not in used:
                    await self.networks.remove(net.id)
                    emit({"network": net.name, "status": "Removed"})

    async def _remove_vm(self, vm: VmRecord, emit: Emit) -> None:
        if vm.state in ("starting", "running", "stopping"):
            await self.vms.stop(vm.id, timeout=10)
            emit({"vm": vm.name, "status": "Stopped"})
        monitor = self._monitors.pop(vm.id, None)
        if monitor is not None:
            monitor.cancel()
        self.health.pop(vm.id, None)
        await self.vms.remove(vm.id, force=True)
        emit({"vm": vm.name, "status": "Removed"})


def _run_request(index: int, service: ServicePlan, config_hash: str) -> RunRequest:
    policy = service.restart
    return RunRequest(
        image=service.image,
        name=service.vm_name,
        command=service.command,
        entrypoint=service.entrypoint,
        env=service.env,
        networks=[
            NetworkAttachment(a.network, ip=a.ipv4_address, aliases=a.aliases)
            for a in service.networks
        ],
        vcpus=service.vcpus,
        memory_mib=service.memory_mib,
        restart=policy,
        labels={**service.labels, HASH_LABEL: config_hash, ORDER_LABEL: str(index)},
        hostname=service.hostname,
        ports=list(service.ports),
    )


def _message(exc: BaseException) -> str:
    return exc.message if isinstance(exc, HyprError) else f"{type(exc).__name__}: {exc}"
