"""A VM's network attachments: claim MAC and address, create the TAP, record it, and undo.

Claims happen in the caller's transaction at create (no await, so concurrent creates never
get the same MAC or address); `attach` makes the kernel side at start and records it in the
same call, undoing everything it did if a step fails.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import replace
from ipaddress import IPv4Address
from typing import TypeVar

from pyroute2 import AsyncIPRoute

from hypr.checks import parse_ipv4
from hypr.daemon.requests import NetworkAttachment
from hypr.errors import Conflict, InvalidArgument, NotFound
from hypr.guest.spec import GuestNic
from hypr.network.drivers import driver_of
from hypr.network.ipam import Ipam
from hypr.network.links import delete_link, owned_links
from hypr.network.manager import NetworkManager
from hypr.network.tap import TapNameTaken, delete_tap
from hypr.state.db import Database
from hypr.state.networks import NetworkRecord
from hypr.state.vms import NicRecord, VmRecord, VmRepository

log = logging.getLogger(__name__)

MAC_PATTERN = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
T = TypeVar("T")


class NicService:
    """Owns MACs, addresses and TAPs of VMs (rows in `vm_nics`, links in the kernel)."""

    def __init__(
        self,
        db: Database,
        rows: VmRepository,
        ipr: AsyncIPRoute,
        networks: NetworkManager,
        ipam: Ipam,
    ) -> None:
        self.db = db
        self.rows = rows
        self.ipr = ipr
        self.networks = networks
        self.ipam = ipam
        self._reserved_taps: set[str] = set()

    def claim(
        self, vm_id: str, attachments: list[NetworkAttachment], dhcp: bool = False
    ) -> tuple[NicRecord, ...]:
        """MACs and addresses of a new VM; call inside the transaction that adds its row."""
        nics: list[NicRecord] = []
        for idx, attachment in enumerate(attachments):
            net = self.networks.get(attachment.network)
            if dhcp and net.driver != "bridge":
                raise InvalidArgument(
                    f"--dhcp: no DHCP server serves {net.driver} network {net.name}"
                )
            if any(n.network_id == net.id for n in nics):
                raise InvalidArgument(f"VM joins network {net.name} twice")
            mac = self._claim_mac(attachment.mac)
            address = self._claim_address(net.id, vm_id, attachment.ip)
            nics.append(NicRecord(vm_id, idx, net.id, mac, address, None))
        return tuple(nics)

    def connect(self, vm: VmRecord, attachment: NetworkAttachment) -> None:
        """One more NIC for a VM that is not running (Docker's `network connect`): MAC and
        address claimed now, the TAP made at its next start, as for a NIC given at create."""
        net = self.networks.get(attachment.network)
        if any(nic.network_id == net.id for nic in vm.nics):
            raise Conflict(f"VM {vm.name} is already connected to network {net.name}")
        idx = len(vm.nics)
        with self.db.transaction():
            mac = self._claim_mac(attachment.mac)
            address = self._claim_address(net.id, vm.id, attachment.ip)
            self.rows.add_nic(NicRecord(vm.id, idx, net.id, mac, address, None))
            ips = _per_nic(vm.spec.requested_ips, idx, lambda: None)
            aliases = _per_nic(vm.spec.aliases, idx, list)
            spec = replace(
                vm.spec,
                requested_ips=[*ips, attachment.ip],
                aliases=[*aliases, list(attachment.aliases)],
            )
            self.rows.set_spec(vm.id, spec)

    def disconnect(self, vm: VmRecord, network_id: str) -> None:
        """Take a VM that is not running off a network: its NIC, address and the NIC's
        aliases go; the NICs after it move up one place."""
        nic = next((n for n in vm.nics if n.network_id == network_id), None)
        if nic is None:
            name = self.networks.get(network_id).name
            raise NotFound(f"VM {vm.name} is not connected to network {name}")
        count = len(vm.nics)
        with self.db.transaction():
            if nic.address is not None:
                self.ipam.release(network_id, nic.address)
            self.rows.remove_nic(vm.id, nic.idx)
            self.rows.renumber_nics_after(vm.id, nic.idx)
            ips = _per_nic(vm.spec.requested_ips, count, lambda: None)
            aliases = _per_nic(vm.spec.aliases, count, list)
            del ips[nic.idx], aliases[nic.idx]
            self.rows.set_spec(vm.id, replace(vm.spec, requested_ips=ips, aliases=aliases))

    async def attach(self, vm: VmRecord) -> list[tuple[str, GuestNic]]:
        """Addresses (again, after a release) and TAPs of a VM about to boot, recorded in
        its rows, each TAP with what the guest is told of its NIC; on any failure, what this
        call made is undone before it raises."""
        vm = self._reclaim_addresses(vm)
        configs = []
        try:
            for nic in vm.nics:
                net = self.networks.get(nic.network_id)
                assert nic.address is not None  # reclaimed above
                tap = await self._new_tap(vm.id, net, nic.address)
                self.rows.set_tap(vm.id, nic.idx, tap)
                self._reserved_taps.discard(tap)
                driver = driver_of(net)
                address = driver.guest_interface(net, nic.address)
                guest_nic = GuestNic(
                    mac=nic.mac,
                    address=None if vm.spec.dhcp else address,
                    gateway=driver.nic_gateway(net, nic.address),
                )
                configs.append((tap, guest_nic))
        except BaseException:
            await self.release(vm.id)
            raise
        return configs

    async def release_taps(self, vm_id: str) -> None:
        """Delete a VM's TAPs (its hypervisor is gone) and forget them in its rows."""
        vm = self.rows.get(vm_id)
        if vm is None:
            return
        for nic in vm.nics:
            if nic.tap:
                await delete_tap(self.ipr, nic.tap)
                self.rows.set_tap(vm_id, nic.idx, None)

    async def release(self, vm_id: str) -> None:
        """TAPs and addresses, after a boot that did not happen."""
        await self.release_taps(vm_id)
        vm = self.rows.get(vm_id)
        if vm is None:
            return
        with self.db.transaction():
            for nic in vm.nics:
                if nic.address is not None:
                    self.ipam.release(nic.network_id, nic.address)
                    self.rows.set_address(vm_id, nic.idx, None)

    async def detach_network(self, network_id: str) -> None:
        """Take every VM off a network that is being force-removed."""
        for vm in self.rows.all():
            for nic in vm.nics:
                if nic.network_id != network_id:
                    continue
                if nic.tap:
                    await delete_tap(self.ipr, nic.tap)
                with self.db.transaction():
                    if nic.address is not None:
                        self.ipam.release(network_id, nic.address)
                    self.rows.remove_nic(vm.id, nic.idx)
                log.info("detached VM %s from network %s", vm.name, network_id[:12])

    async def sweep(self) -> None:
        """At start-up: remove TAPs no VM row holds and addresses no VM owns."""
        live_taps = self.rows.taps_in_use()
        for link in await owned_links(self.ipr):
            if link.kind == "nic" and link.ifname not in live_taps:
                log.info("removing stale TAP %s", link.ifname)
                await delete_link(self.ipr, link.ifname)
        known = {vm.id for vm in self.rows.all()}
        for net in self.networks.all():
            for address, owner in self.ipam.allocations(net.id).items():
                if owner not in known:
                    log.info("releasing stale address %s on %s", address, net.name)
                    self.ipam.release(net.id, address)

    def dns_servers(self, vm: VmRecord) -> list[str]:
        """Each network's gateway answers DNS for the VMs on it."""
        servers = []
        for nic in vm.nics:
            gateway = str(self.networks.get(nic.network_id).gateway)
            if gateway not in servers:
                servers.append(gateway)
        return servers

    # --- internals -----------------------------------------------------------------------

    def _claim_mac(self, requested: str | None) -> str:
        if requested is not None:
            mac = requested.lower()
            if not MAC_PATTERN.match(mac) or int(mac[:2], 16) & 1 or mac == "00:00:00:00:00:00":
                raise InvalidArgument(
                    f"invalid MAC address {requested!r}: expected a unicast "
                    "address such as 02:fc:00:00:00:01"
                )
            if self.rows.mac_taken(mac):
                raise Conflict(f"MAC address {mac} is already in use")
            return mac
        while True:
            mac = "02:fc:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(4))
            if not self.rows.mac_taken(mac):
                return mac

    def _claim_address(self, network_id: str, vm_id: str, requested: str | None) -> IPv4Address:
        if requested is not None:
            return self.ipam.reserve(network_id, parse_ipv4(requested), vm_id)
        return self.ipam.allocate(network_id, vm_id)

    def _reclaim_addresses(self, vm: VmRecord) -> VmRecord:
        """Give back addresses to NICs that lost theirs in a failed boot."""
        with self.db.transaction():
            for nic in vm.nics:
                if nic.address is None:
                    requested = (vm.spec.requested_ips + [None] * (nic.idx + 1))[nic.idx]
                    address = self._claim_address(nic.network_id, vm.id, requested)
                    self.rows.set_address(vm.id, nic.idx, address)
        return self.rows.get(vm.id) or vm

    async def _new_tap(self, vm_id: str, net: NetworkRecord, address: IPv4Address) -> str:
        while True:
            used = self.rows.taps_in_use() | self._reserved_taps
            index = 0
            while f"tap{index}" in used:
                index += 1
            name = f"tap{index}"
            self._reserved_taps.add(name)
            try:
                await driver_of(net).plug(self.ipr, name, net, vm_id, address)
                return name
            except TapNameTaken:
                continue  # a foreign link has that name; keep it reserved and try the next
            except BaseException:
                self._reserved_taps.discard(name)
                raise


def _per_nic(values: list[T], count: int, empty: Callable[[], T]) -> list[T]:
    """A spec's per-NIC list (older rows may have fewer entries than NICs), cut or padded
    to `count` entries with empty ones."""
    return [*values[:count], *(empty() for _ in range(count - len(values)))]
