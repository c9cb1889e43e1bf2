"""The services that follow VMs: DNS records, DHCP reservations, port forwards.

The VM manager owns the lifecycle; a service only reacts to it. Each hook runs at a fixed
point: `vm_created` (with what the VM publishes, not the caller's request) inside the
transaction that claims the VM's name and addresses (raise a HyprError to refuse the
request, and the whole creation is undone), `vm_starting` once the VM's NICs have TAPs and
addresses but before the guest boots (so a workload finds its name and ports in place),
`vm_stopped` when its hypervisor has exited (or its boot failed; the record carries that
exit's `exit_code` and `error`, not yet in its row), `vm_removed` after its
rows are gone, `vm_renamed` after its row has its new name (running or not).
"""

from __future__ import annotations

from typing import Protocol

from hypr.state.vms import PublishRequest, VmRecord


class VmObserver(Protocol):
    def vm_created(self, vm: VmRecord, publish: PublishRequest) -> None: ...

    async def vm_starting(self, vm: VmRecord) -> None: ...

    async def vm_stopped(self, vm: VmRecord) -> None: ...

    async def vm_removed(self, vm: VmRecord) -> None: ...

    async def vm_renamed(self, old: VmRecord, vm: VmRecord) -> None: ...

    async def reconcile(self, running: list[VmRecord]) -> None:
        """At daemon start, after adoption: make the service match the running VMs."""
        ...
