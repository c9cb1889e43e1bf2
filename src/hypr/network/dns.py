"""DNS (service discovery) and DHCP for VMs: one dnsmasq per network, as libvirt does; the
service that follows networks and VMs for them.

Records are files in directories dnsmasq watches (--hostsdir, --dhcp-hostsdir), one per VM
and network (hypr.network.dns_config). dnsmasq 2.90 reads a new or changed hosts file at
once and drops the names of a changed or deleted one, so a record appears when its VM starts
and goes when it stops without a restart. A DHCP reservation is only ever added that way:
dropping one needs a SIGHUP, sent when a VM is removed. VMs on several networks ask view
servers (hypr.network.dns_views).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
from pathlib import Path

from hypr.errors import Conflict, NotFound
from hypr.network.dhcp_leases import read_leases, release_lease
from hypr.network.dns_config import (
    GUEST_PORT,
    LEASES,
    network_config,
    network_dir,
    record_key,
    record_names,
    write_record,
)
from hypr.network.dns_views import DnsViews, ServerStatus
from hypr.network.dnsmasq import Dnsmasq, write_atomic
from hypr.network.firewall import DnsSteeringDriver
from hypr.network.manager import NetworkManager
from hypr.network.resolved import configure_resolved, systemd_resolved_here
from hypr.state.db import Database
from hypr.state.networks import NetworkRecord
from hypr.state.vms import PublishRequest, VmRecord, VmRepository

log = logging.getLogger(__name__)


class DnsService:
    """Follows networks and VMs: starts the servers, writes the records, steers the views."""

    def __init__(
        self,
        run_dir: Path,
        db: Database,
        networks: NetworkManager,
        firewall: DnsSteeringDriver,
    ) -> None:
        self.run_dir = run_dir
        self.root = run_dir / "dns"
        self.vms = VmRepository(db)
        self.networks = networks
        self.servers: dict[str, Dnsmasq] = {}
        self.views = DnsViews(run_dir, firewall)
        self.active: dict[str, VmRecord] = {}  # VMs with records: started, not yet stopped
        self.resolved = systemd_resolved_here()
        self._lock = asyncio.Lock()

    # --- network hooks -------------------------------------------------------------------

    async def network_added(self, net: NetworkRecord) -> None:
        async with self._lock:
            await self._ensure_server(net)
        await self._configure_resolved(net)

    async def network_removed(self, net: NetworkRecord) -> None:
        async with self._lock:
            for vm_id, vm in self.active.items():
                nics = tuple(nic for nic in vm.nics if nic.network_id != net.id)
                self.active[vm_id] = dataclasses.replace(vm, nics=nics)
            await self._sync_views()
            server = self.servers.pop(net.id, None)
            if server is not None:
                await server.stop()
            shutil.rmtree(self._dir(net.id), ignore_errors=True)

    # --- VM hooks ------------------------------------------------------------------------

    def vm_created(self, vm: VmRecord, publish: PublishRequest) -> None:
        """Refuse a name that differs from another VM's only in case: DNS ignores case, so
        both VMs would answer to it."""
        other = self.vms.name_in_other_case(vm.name, vm.id)
        if other is not None:
            raise Conflict(
                f"the name {vm.name} is already in use by VM {other} (DNS names ignore case)"
            )

    async def vm_starting(self, vm: VmRecord) -> None:
        """Records and reservations in place before the guest boots and asks for them."""
        async with self._lock:
            self.active[vm.id] = vm
            for nic in vm.nics:
                net = self._network(nic.network_id)
                if net is None or nic.address is None:
                    continue
                key = record_key(vm.id)
                write_record(self._dir(net.id) / "hosts", key, record_names(vm, nic), nic.address)
                self._reserve(net, key, f"{nic.mac},{nic.address}\n")
            await self._sync_views()

    async def vm_stopped(self, vm: VmRecord) -> None:
        async with self._lock:
            self.active.pop(vm.id, None)
            for net_id in self.servers:
                (self._dir(net_id) / "hosts" / record_key(vm.id)).unlink(missing_ok=True)
            for nic in vm.nics:
                net = self._network(nic.network_id)
                if net is not None:
                    await release_lease(self._dir(net.id) / LEASES, net.bridge, nic.mac)
            await self._sync_views()

    async def vm_renamed(self, old: VmRecord, vm: VmRecord) -> None:
        """A running VM answers to its new name at once (dnsmasq re-reads a changed record)."""
        async with self._lock:
            if vm.id not in self.active:
                return
            self.active[vm.id] = vm
            for nic in vm.nics:
                net = self._network(nic.network_id)
                if net is not None and nic.address is not None:
                    hosts = self._dir(net.id) / "hosts"
                    write_record(hosts, record_key(vm.id), record_names(vm, nic), nic.address)
            await self._sync_views()

    async def vm_removed(self, vm: VmRecord) -> None:
        async with self._lock:
            for net_id, server in self.servers.items():
                with contextlib.suppress(FileNotFoundError):
                    (self._dir(net_id) / "dhcp" / record_key(vm.id)).unlink()
                    server.reload()

    async def reconcile(self, running: list[VmRecord]) -> None:
        """At daemon start: one server per network (adopted or restarted), records of the
        running VMs only, the views they need, and nothing else."""
        async with self._lock:
            nets = self.networks.all()
            for net in nets:
                await self._ensure_server(net)
            self.active = {vm.id: vm for vm in running}
            existing = {record_key(vm_id) for vm_id in self.vms.ids()}
            for net in nets:
                await self._reconcile_records(net, existing)
            await self._sync_views()
            await self._stop_strays()
        for net in nets:
            await self._configure_resolved(net)

    def close(self) -> None:
        """hyprd exits: the servers keep answering, and the next hyprd adopts them."""
        for server in [*self.servers.values(), *self.views.servers]:
            server.detach()

    # --- queries -------------------------------------------------------------------------

    def status(self) -> tuple[list[ServerStatus], list[ServerStatus]]:
        """(network servers, view servers)."""
        networks = []
        for net in self.networks.all():
            server = self.servers.get(net.id)
            pid = server.pid if server is not None and server.running else None
            networks.append(ServerStatus([net], GUEST_PORT, pid))
        return networks, self.views.status()

    # --- internals -----------------------------------------------------------------------

    def _dir(self, network_id: str) -> Path:
        return network_dir(self.run_dir, network_id)

    def _network(self, network_id: str) -> NetworkRecord | None:
        with contextlib.suppress(NotFound):
            return self.networks.get(network_id)
        return None

    async def _sync_views(self) -> None:
        await self.views.sync(self.active.values(), self._network)

    async def _ensure_server(self, net: NetworkRecord) -> None:
        directory = self._dir(net.id)
        for sub in ("hosts", "dhcp"):
            (directory / sub).mkdir(parents=True, exist_ok=True)
        server = self.servers.get(net.id) or Dnsmasq(directory, f"network {net.name}")
        await server.ensure(network_config(net, directory))
        self.servers[net.id] = server

    def _reserve(self, net: NetworkRecord, key: str, line: str) -> None:
        """Write a DHCP reservation; one that changed needs a reload to drop the old one."""
        path = self._dir(net.id) / "dhcp" / key
        try:
            old: str | None = path.read_text()
        except FileNotFoundError:
            old = None
        if old == line:
            return
        write_atomic(path, line)
        if old is not None:
            self.servers[net.id].reload()

    async def _reconcile_records(self, net: NetworkRecord, existing: set[str]) -> None:
        """Hosts files for exactly the running VMs, reservations for existing VMs only, and
        leases only for running ones."""
        directory = self._dir(net.id)
        wanted = {
            record_key(vm.id): (record_names(vm, nic), nic.mac, nic.address)
            for vm in self.active.values()
            for nic in vm.nics
            if nic.network_id == net.id and nic.address is not None
        }
        for path in (directory / "hosts").iterdir():
            if path.name not in wanted:
                path.unlink()
        for key, (names, mac, address) in wanted.items():
            write_record(directory / "hosts", key, names, address)
            self._reserve(net, key, f"{mac},{address}\n")
        stale = [path for path in (directory / "dhcp").iterdir() if path.name not in existing]
        for path in stale:
            path.unlink()
        if stale:
            self.servers[net.id].reload()
        live_macs = {mac for _, mac, _ in wanted.values()}
        for mac in read_leases(directory / LEASES).keys() - live_macs:
            await release_lease(directory / LEASES, net.bridge, mac)

    async def _stop_strays(self) -> None:
        """Stop the servers of networks and views that are gone (e.g. a view whose VMs died
        while hyprd was down) and remove their files."""
        if not self.root.is_dir():
            return
        known = {server.directory for server in [*self.servers.values(), *self.views.servers]}
        for directory in self.root.iterdir():
            if directory.is_dir() and directory not in known:
                log.info("stopping the stale DNS server in %s", directory)
                await Dnsmasq(directory, directory.name).stop()
                shutil.rmtree(directory, ignore_errors=True)

    async def _configure_resolved(self, net: NetworkRecord) -> None:
        if not self.resolved:
            log.debug("systemd-resolved does not serve this namespace; not configuring it")
            return
        await configure_resolved(net)
