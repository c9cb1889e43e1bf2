"""The service step of a stack's `up`: each service's replicas made to match the file, as
soon as what the service depends on holds (independent services boot in parallel).

A service's VMs are `<project>-<service>-<N>` for N from 1 to its replicas; an unchanged
running replica (same config hash) is kept, a changed one recreated, and replicas above
the count are removed, the highest numbers first, as Docker Compose scales down.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from hypr import faults
from hypr.compose.project import HASH_LABEL, NUMBER_LABEL, SERVICE_LABEL, Project, ServicePlan
from hypr.daemon.health import HealthMonitor
from hypr.daemon.requests import NetworkAttachment, RunRequest
from hypr.daemon.stack_volumes import mount_requests
from hypr.daemon.vms import VmManager
from hypr.errors import HyprError, InvalidArgument
from hypr.state.vms import VmRecord

ORDER_LABEL = "com.hypr.compose.order"
ONEOFF_LABEL = "com.docker.compose.oneoff"
Emit = Callable[[dict[str, Any]], None]
Reached = Callable[[str, str], None]  # a step reached, and its fault point
UP_CREATED = faults.register("compose.up.created", "up: a service's VM created, not started")
UP_STARTED = faults.register("compose.up.started", "up: a service's VM started")


def number_of(vm: VmRecord) -> int:
    """A stack VM's replica number (0 for a one-off VM of `compose run`)."""
    if vm.spec.labels.get(ONEOFF_LABEL) == "True":
        return 0
    with contextlib.suppress(ValueError):
        return int(vm.spec.labels.get(NUMBER_LABEL, "1"))
    return 1


class Deployer:
    """Converges the services of one `up`; what it creates is appended to `created`."""

    def __init__(
        self, vms: VmManager, health: HealthMonitor, remove: Callable[..., Any], reached: Reached
    ) -> None:
        self.vms = vms
        self.health = health
        self.remove = remove  # StackManager._remove_vm: stop, forget health, remove
        self.reached = reached

    async def deploy(
        self, project: Project, current: list[VmRecord], emit: Emit, created: list[str]
    ) -> None:
        existing: dict[str, list[VmRecord]] = {}
        for vm in current:
            if number_of(vm):
                existing.setdefault(vm.spec.labels.get(SERVICE_LABEL, ""), []).append(vm)
        loop = asyncio.get_running_loop()
        started = {s.name: loop.create_future() for s in project.services}

        async def deploy(index: int, service: ServicePlan) -> None:
            for dep, condition in service.depends_on.items():
                for vm in await asyncio.shield(started[dep]):
                    await self._wait_condition(dep, vm, condition, emit)
            vms = await self._service(index, service, existing.get(service.name, []), emit, created)
            started[service.name].set_result(vms)

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

    async def _service(
        self,
        index: int,
        service: ServicePlan,
        current: list[VmRecord],
        emit: Emit,
        created: list[str],
    ) -> list[VmRecord]:
        """Scale down (highest numbers first), then converge replicas 1..N in parallel."""
        by_number: dict[int, VmRecord] = {}
        for vm in sorted(current, key=number_of, reverse=True):
            number = number_of(vm)
            if number > service.replicas or number in by_number:
                await self.remove(vm, emit)
            else:
                by_number[number] = vm
        return list(
            await asyncio.gather(
                *(
                    self._replica(index, service, n, by_number.get(n), emit, created)
                    for n in range(1, service.replicas + 1)
                )
            )
        )

    async def _replica(
        self,
        index: int,
        service: ServicePlan,
        number: int,
        current: VmRecord | None,
        emit: Emit,
        created: list[str],
    ) -> VmRecord:
        """Make one replica match the file; an unchanged running VM is left alone."""
        wanted = service.config_hash
        if current is not None:
            if current.spec.labels.get(HASH_LABEL) == wanted:
                if current.state in ("running", "starting"):
                    emit({"vm": current.name, "status": "Running"})
                    self.health.watch(current, service)
                    return current
                vm = await self.vms.start(current.id)
                emit({"vm": vm.name, "status": "Started"})
                self.health.watch(vm, service)
                return vm
            emit({"vm": current.name, "status": "Recreate"})
            # Its anonymous volumes go with it (compose's --renew-anon-volumes): the new
            # VM gets new ones, and the old ones would be left to nobody.
            await self.vms.remove(current.id, force=True, volumes=True)
        request = run_request(service, number, {HASH_LABEL: wanted, ORDER_LABEL: str(index)})
        emit({"vm": request.name, "status": "Creating"})
        record = self.vms.create(request)
        created.append(record.id)
        self.reached(f"service {service.name} created", UP_CREATED)
        vm = await self.vms.start(record.id)
        emit({"vm": vm.name, "status": "Started"})
        self.reached(f"service {service.name} started", UP_STARTED)
        self.health.watch(vm, service)
        return vm

    async def _wait_condition(self, service: str, vm: VmRecord, condition: str, emit: Emit) -> None:
        if condition == "service_healthy":
            health = self.health.of(vm.id)
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


def run_request(service: ServicePlan, number: int, labels: dict[str, str]) -> RunRequest:
    """Replica `number`'s VM: its name, number label and share of the published ports."""
    return RunRequest(
        image=service.image,
        name=service.vm_name(number),
        command=service.command,
        entrypoint=service.entrypoint,
        env=service.env,
        networks=[
            NetworkAttachment(network=a.network, ip=a.ipv4_address, aliases=a.aliases)
            for a in service.networks
        ],
        vcpus=service.vcpus,
        memory_mib=service.memory_mib,
        restart=service.restart,
        labels={**service.labels, NUMBER_LABEL: str(number), **labels},
        hostname=service.hostname,
        ports=service.ports_of(number),
        mounts=mount_requests(service.mounts),
        expose=service.expose,
        idle_timeout=service.idle_timeout,
    )
