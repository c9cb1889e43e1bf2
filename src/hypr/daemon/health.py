"""Compose healthchecks of stack VMs, run through exec in the guest as Docker runs them in
the container, with the states `docker ps` shows (starting, healthy, unhealthy)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from hypr.compose.project import ServicePlan
from hypr.daemon.vms import VmManager
from hypr.errors import HyprError
from hypr.state.vms import VmRecord


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
