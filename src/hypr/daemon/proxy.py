"""The reverse proxy by subdomain: `<vm>.<domain>` and `<port>-<vm>.<domain>` on
`HYPR_PROXY_ADDR`, served by an HAProxy that hyprd supervises (hypr.network.haproxy).

A VM has routes from the moment it starts until it stops: one per exposed TCP port (its
image's EXPOSE, `--expose`, and the guest ports it publishes with `-p`), plus its name
alone for the first of them. Every other host reaches hyprd's gate, which answers here:
404 for a name that is no VM or a port it does not expose, 502 for a VM that is not
running. Before that 502 the gate awaits `wake(vm_id)`: the hook through which a sleeping
VM is woken and the request held meanwhile (the default wakes nothing).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable

from hypr.config import Settings
from hypr.daemon.ports import PortForwarder
from hypr.network.haproxy import HAProxy
from hypr.network.proxy_config import Route, map_entries
from hypr.network.proxy_gate import Page, ProxyGate, Upstream
from hypr.state.vms import PublishRequest, VmRecord, VmRepository

log = logging.getLogger(__name__)

Wake = Callable[[str], Awaitable[None]]


async def wake_nothing(vm_id: str) -> None:
    """The default `wake`: no VM sleeps, so one that is not running stays so (502)."""


class ProxyService:
    """Follows VMs for the proxy: their routes in HAProxy's map, the gate's answers."""

    def __init__(self, settings: Settings, vms: VmRepository, ports: PortForwarder) -> None:
        self.listen = settings.proxy_addr
        self.domain = settings.proxy_domain
        self.vms = vms
        self.ports = ports
        directory = settings.run_dir / "proxy"
        self.haproxy = HAProxy(directory)
        self.gate = ProxyGate(directory / "gate.sock", self.decide)
        # Awaited by the gate for a VM that is not running, before it answers 502: the
        # daemon sets it to wake sleeping VMs (vm_starting gives the woken VM its route).
        self.wake: Wake = wake_nothing
        self.active: dict[str, VmRecord] = {}  # VMs started and not yet stopped

    # --- VmObserver ----------------------------------------------------------------------

    def vm_created(self, vm: VmRecord, publish: PublishRequest) -> None:
        """Nothing to claim: a VM gets its routes when it starts."""

    async def vm_starting(self, vm: VmRecord) -> None:
        self.active[vm.id] = vm
        await self._sync()

    async def vm_stopped(self, vm: VmRecord) -> None:
        if self.active.pop(vm.id, None) is not None:
            await self._sync()

    async def vm_removed(self, vm: VmRecord) -> None:
        await self.vm_stopped(vm)

    async def vm_renamed(self, old: VmRecord, vm: VmRecord) -> None:
        if vm.id in self.active:
            self.active[vm.id] = dataclasses.replace(self.active[vm.id], name=vm.name)
            await self._sync()

    async def reconcile(self, running: list[VmRecord]) -> None:
        """At start-up: serve the gate, adopt or start HAProxy with the adopted VMs' routes
        (or stop the HAProxy a previous hyprd left, if the proxy is now turned off)."""
        self.active = {vm.id: vm for vm in running}
        if not self.listen:
            await self.haproxy.stop()
            return
        self.haproxy.directory.mkdir(parents=True, exist_ok=True)
        await self.gate.start()
        await self.haproxy.ensure(self.listen, self.routes())

    def close(self) -> None:
        """hyprd exits: HAProxy keeps serving the running VMs for the next hyprd."""
        self.gate.close()
        self.haproxy.detach()

    # --- routes --------------------------------------------------------------------------

    def routes(self) -> dict[str, str]:
        """HAProxy's map for the VMs that run now."""
        routes = []
        for vm in self.active.values():
            address = self.ports.target(vm)
            if address is not None:
                routes.append(Route((vm.name, vm.short_id), vm.name, address, self.exposed(vm)))
        return map_entries(routes, self.domain)

    def exposed(self, vm: VmRecord) -> list[int]:
        """A VM's exposed TCP ports, the first one first: `--expose` and the image's in
        their order, then the guest ports published with `-p`."""
        ports = [
            int(spec.partition("/")[0]) for spec in vm.spec.exposed_ports if "/udp" not in spec
        ]
        ports += [
            fwd.guest_port
            for fwd in self.ports.forwards(vm.id)
            if fwd.protocol == "tcp" and not fwd.ssh
        ]
        return list(dict.fromkeys(ports))

    async def _sync(self) -> None:
        if self.listen:
            await self.haproxy.update(self.routes())

    # --- the gate's answers --------------------------------------------------------------

    async def decide(self, host: str) -> Page | Upstream:
        """What a request for `host` gets when HAProxy has no route for it."""
        label = host.removesuffix(f".{self.domain}")
        if label == host or not label:
            return _not_found(f"{host or 'no host'} is not <vm>.{self.domain}: no VM is there")
        vm, port = self._find(label)
        if vm is None:
            return _not_found(f"no VM named {label!r} ({host})")
        exposed = self.exposed(vm)
        if not exposed:
            return _not_found(f"VM {vm.name} exposes no port (EXPOSE in its image, --expose)")
        if port is None:
            port = exposed[0]
        elif port not in exposed:
            listed = ", ".join(map(str, exposed))
            return _not_found(f"VM {vm.name} does not expose port {port} (it exposes {listed})")
        if vm.id not in self.active:
            await self.wake(vm.id)
        running = self.active.get(vm.id)
        if running is None:
            state = (self.vms.find(vm.id) or vm).state
            return Page(502, "Bad Gateway", f"VM {vm.name} is not running (it is {state})")
        address = self.ports.target(running)
        if address is None:
            return Page(502, "Bad Gateway", f"VM {vm.name} is on no network the proxy reaches")
        return Upstream(vm.name, str(address), port)

    def _find(self, label: str) -> tuple[VmRecord | None, int | None]:
        """The VM a subdomain names, and the port it asks for (None: the first)."""
        vms = self.vms.all()
        for vm in vms:
            if label in (vm.name.lower(), vm.short_id):
                return vm, None
        number, dash, rest = label.partition("-")
        if dash and number.isdigit() and 0 < int(number) < 65536:
            for vm in vms:
                if rest in (vm.name.lower(), vm.short_id):
                    return vm, int(number)
        return None, None


def _not_found(text: str) -> Page:
    return Page(404, "Not Found", text)
