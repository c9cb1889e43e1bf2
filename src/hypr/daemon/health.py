"""Healthchecks, run through exec in the guest as Docker runs them in the container, with
the states `docker ps` shows (starting, healthy, unhealthy): those of compose services, which
the stack manager starts, and those of VMs created with one (Docker's Healthcheck), which
follow their VM's boots."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from hypr.compose.project import ServicePlan
from hypr.daemon.vms import VmManager
from hypr.errors import HyprError
from hypr.state.vms import PublishRequest, VmRecord

READY_POLL_SECONDS = 0.1


@dataclass
class Health:
    """A healthcheck's state, as `docker ps` shows it."""

    status: str = "starting"  # starting | healthy | unhealthy
    failures: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class HealthMonitor:
    """One healthcheck task per VM whose service has a healthcheck."""

    def __init__(self, vms: VmManager) -> None:
        self.vms = vms
        self.health: dict[str, Health] = {}  # by VM id
        self._monitors: dict[str, asyncio.Task[None]] = {}

    def of(self, vm_id: str) -> Health | None:
        return self.health.get(vm_id)

    def status(self, vm_id: str) -> str | None:
        health = self.health.get(vm_id)
        return health.status if health else None

    def forget(self, vm_id: str) -> None:
        """Stop checking a VM that is going away."""
        monitor = self._monitors.pop(vm_id, None)
        if monitor is not None:
            monitor.cancel()
        self.health.pop(vm_id, None)

    def watch(self, vm: VmRecord, service: ServicePlan) -> None:
        """Start the service's healthcheck on its VM, once."""
        if service.healthcheck is not None:
            self._watch(vm.id, self._healthcheck(vm.id, service.healthcheck))

    def _watch(self, vm_id: str, work: Coroutine[Any, Any, None]) -> None:
        if vm_id in self._monitors:
            work.close()
            return
        self.health[vm_id] = Health()
        self._monitors[vm_id] = asyncio.create_task(work)

    async def _healthcheck(self, vm_id: str, check: Mapping[str, Any]) -> None:
        """Run the healthcheck through exec in the guest, as Docker does in the container."""
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
            if self._monitors.get(vm_id) is asyncio.current_task():
                del self._monitors[vm_id]
            if health.status == "starting":
                health.status = "unhealthy"
                health.changed.set()


class SpecHealth(HealthMonitor):
    """The healthchecks that VMs carry in their spec: checked from each boot's readiness to
    the VM's stop (a VmObserver); the last state stays until the VM is removed."""

    def vm_created(self, vm: VmRecord, publish: PublishRequest) -> None:
        """Nothing yet: checks start with a boot."""

    async def vm_starting(self, vm: VmRecord) -> None:
        if vm.spec.healthcheck is not None:
            self._stop_checking(vm.id)
            self._watch(vm.id, self._after_boot(vm.id, asdict(vm.spec.healthcheck)))

    async def vm_stopped(self, vm: VmRecord) -> None:
        self._stop_checking(vm.id)

    async def vm_removed(self, vm: VmRecord) -> None:
        self.forget(vm.id)

    async def vm_renamed(self, old: VmRecord, vm: VmRecord) -> None:
        """Checks follow ids, not names."""

    async def reconcile(self, running: list[VmRecord]) -> None:
        for vm in running:
            if vm.spec.healthcheck is not None:
                self._watch(vm.id, self._after_boot(vm.id, asdict(vm.spec.healthcheck)))

    def _stop_checking(self, vm_id: str) -> None:
        monitor = self._monitors.pop(vm_id, None)
        if monitor is not None:
            monitor.cancel()

    async def _after_boot(self, vm_id: str, check: dict[str, Any]) -> None:
        """Wait until the guest agent is ready, then check. Polled: the hypervisor that will
        carry a ready flag does not exist yet when `vm_starting` announces the boot."""
        while (running := self.vms.running.get(vm_id)) is None or not running.ready:  # noqa: ASYNC110
            await asyncio.sleep(READY_POLL_SECONDS)
        await self._healthcheck(vm_id, check)
