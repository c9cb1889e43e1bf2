"""Network lifecycle: the one place that keeps rows, bridges and firewall rules in step.

Each operation takes the manager's lock, so concurrent API calls see networks appear and
disappear whole, and undoes the steps it already did when a later one fails.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, ip_address, ip_network
from typing import Protocol

from pyroute2 import AsyncIPRoute

from hypr.errors import Conflict, HyprError, InvalidArgument, NotFound
from hypr.network import bridge
from hypr.network.drivers import DRIVERS, driver_of
from hypr.network.firewall import FirewallDriver
from hypr.network.ipam import Ipam
from hypr.network.links import (
    delete_link,
    host_addresses,
    link_names,
    owned_links,
    routed_networks,
)
from hypr.network.names import check_network_name, new_id, now_rfc3339
from hypr.state.db import Database
from hypr.state.networks import NetworkRecord, NetworkRepository

log = logging.getLogger(__name__)

DEFAULT_NETWORK = "bridge"
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
AUTO_SUBNET_FIRST_OCTET = 89  # auto subnets are 10.89.0.0/16, 10.90.0.0/16, ...
SUPPORTED_DRIVERS = tuple(DRIVERS)
# Ranges a bridge must never be given: its address and connected route would shadow the
# host's own traffic there, or make no sense on a LAN at all.
RESERVED_SUBNETS = [
    (IPv4Network("0.0.0.0/8"), "'this network'"),
    (IPv4Network("127.0.0.0/8"), "the loopback range"),
    (IPv4Network("169.254.0.0/16"), "the link-local range"),
    (IPv4Network("224.0.0.0/4"), "the multicast range"),
    (IPv4Network("240.0.0.0/4"), "the reserved range (and broadcast)"),
]


@dataclass(frozen=True)
class NetworkRequest:
    """What `hypr network create` asks for."""

    name: str
    subnet: str | None = None
    gateway: str | None = None
    internal: bool = False
    driver: str = "bridge"
    labels: dict[str, str] = field(default_factory=dict)
    ip_range: str | None = None  # hand out addresses from this part of the subnet only
    bridge: str | None = None  # the bridge's name (Docker's com.docker.network.bridge.name)
    options: dict[str, str] = field(default_factory=dict)  # kept as given, for inspect


# Called with a network id before a forced removal, to detach the VMs that use it.
DetachHook = Callable[[str], Awaitable[None]]


class NetworkObserver(Protocol):
    """A service that follows networks (per-network DNS and DHCP servers)."""

    async def network_added(self, net: NetworkRecord) -> None: ...

    async def network_removed(self, net: NetworkRecord) -> None: ...


class NetworkManager:
    """Creates, lists and removes hypr networks."""

    def __init__(
        self, db: Database, ipr: AsyncIPRoute, firewall: FirewallDriver, ipam: Ipam
    ) -> None:
        self.db = db
        self.ipr = ipr
        self.firewall = firewall
        self.ipam = ipam
        self.repo = NetworkRepository(db)
        self.lock = asyncio.Lock()
        self.detach_hook: DetachHook | None = None
        self.observers: list[NetworkObserver] = []

    # --- queries -------------------------------------------------------------------------

    def all(self) -> list[NetworkRecord]:
        return self.repo.all()

    def get(self, ref: str) -> NetworkRecord:
        net = self.repo.find(ref)
        if net is None:
            raise NotFound(f"network {ref} not found")
        return net

    def attached_count(self, network_id: str) -> int:
        return self.ipam.allocated_count(network_id)

    # --- start-up ------------------------------------------------------------------------

    async def reconcile(self, default_subnet: IPv4Network) -> None:
        """Bring the kernel in line with the database: create the default network on first
        start, re-create missing bridges, rebuild the firewall table, and delete bridges of
        networks that no longer exist."""
        bridge.enable_ip_forwarding()
        networks = self.repo.all()
        self.firewall.setup(networks)
        for net in networks:
            await driver_of(net).ensure(self.ipr, net)
        if self.repo.find(DEFAULT_NETWORK) is None:
            default = await self.create(
                NetworkRequest(name=DEFAULT_NETWORK, subnet=str(default_subnet)),
                is_default=True,
            )
            networks.append(default)
        known = {net.id for net in networks}
        for link in await owned_links(self.ipr):
            if link.kind == "network" and link.owner not in known:
                log.info("removing stale bridge %s", link.ifname)
                await delete_link(self.ipr, link.ifname)

    # --- commands ------------------------------------------------------------------------

    async def create(self, req: NetworkRequest, is_default: bool = False) -> NetworkRecord:
        check_network_name(req.name)
        if req.driver not in SUPPORTED_DRIVERS:
            raise InvalidArgument(
                f"network driver {req.driver!r} is not supported (use bridge or ptp)"
            )
        driver = DRIVERS[req.driver]
        async with self.lock:
            existing = self.repo.all()
            if any(net.name == req.name for net in existing):
                raise Conflict(f"network with name {req.name} already exists")
            if req.subnet is not None:
                subnet = parse_subnet(req.subnet)
                _check_no_overlap(subnet, existing)
                if not is_default:  # the configured default is the operator's own choice
                    await self._check_not_on_host(subnet)
            else:
                if req.gateway is not None or req.ip_range is not None:
                    what = "--gateway" if req.gateway is not None else "an IP range"
                    raise InvalidArgument(f"{what} needs --subnet")
                subnet = await self._pick_subnet(existing)
            driver.check(subnet, req.gateway, req.internal)
            gateway = parse_gateway(req.gateway, subnet) or driver.default_gateway(subnet)
            ip_range = parse_ip_range(req.ip_range, subnet) if req.ip_range else None
            net = NetworkRecord(
                id=new_id(),
                name=req.name,
                driver=req.driver,
                subnet=subnet,
                gateway=gateway,
                bridge=await self._bridge_name(req.bridge, existing, driver.link_prefix),
                internal=req.internal,
                created=now_rfc3339(),
                labels=dict(req.labels),
                is_default=is_default,
                ip_range=ip_range,
                options=dict(req.options),
            )
            await self._build(net)
            for observer in self.observers:
                await observer.network_added(net)
            log.info("created %s network %s (%s, %s)", net.driver, net.name, net.subnet, net.bridge)
            return net

    async def remove(self, ref: str, force: bool = False) -> NetworkRecord:
        async with self.lock:
            net = self.get(ref)
            if net.is_default:
                raise Conflict(f"network {net.name} is the default network and cannot be removed")
            attached = self.attached_count(net.id)
            if attached and not force:
                raise Conflict(
                    f"network {net.name} has {attached} attached VM(s); "
                    "stop and remove them first, or use --force"
                )
            if attached and self.detach_hook is not None:
                await self.detach_hook(net.id)
            for observer in self.observers:
                await observer.network_removed(net)
            self.firewall.remove_network(net)
            await delete_link(self.ipr, net.bridge)
            self.repo.remove(net.id)
            log.info("removed network %s", net.name)
            return net

    async def prune(
        self, only: Callable[[NetworkRecord], bool] = lambda net: True
    ) -> list[NetworkRecord]:
        """Remove every non-default network that no VM uses (of those `only` selects:
        Docker's prune filters)."""
        removed = []
        for net in self.repo.all():
            if net.is_default or self.attached_count(net.id) or not only(net):
                continue
            try:
                removed.append(await self.remove(net.id))
            except NotFound:
                continue  # removed concurrently
        return removed

    # --- internals -----------------------------------------------------------------------

    async def _build(self, net: NetworkRecord) -> None:
        """Create the network's link, firewall elements and rows; undo what was done if a
        step fails."""
        undo: list[Callable[[], Awaitable[None]]] = []
        driver = driver_of(net)
        try:
            await driver.ensure(self.ipr, net)
            undo.append(lambda: delete_link(self.ipr, net.bridge))
            self.firewall.add_network(net)

            async def _unfirewall() -> None:
                self.firewall.remove_network(net)

            undo.append(_unfirewall)
            with self.db.transaction():
                self.repo.add(net)
                self.ipam.add_pool(net.id, driver.pool(net.subnet, net.gateway))
        except BaseException as exc:
            for step in reversed(undo):
                try:
                    await step()
                except Exception:  # keep undoing; the original error is what matters
                    log.exception("rollback step failed for network %s", net.name)
            if isinstance(exc, HyprError):
                raise
            raise HyprError(f"cannot create network {net.name}: {exc}") from exc

    async def _check_not_on_host(self, subnet: IPv4Network) -> None:
        """Refuse a subnet that an address or a route of hyprd's namespace already uses: the
        bridge's connected route would take that traffic away from where it goes now."""
        for address in await host_addresses(self.ipr):
            if address.network.overlaps(subnet):
                raise Conflict(f"subnet {subnet} overlaps address {address} of the host")
        for route in await routed_networks(self.ipr):
            if route.overlaps(subnet):
                raise Conflict(f"subnet {subnet} overlaps the host's route to {route}")

    async def _pick_subnet(self, existing: list[NetworkRecord]) -> IPv4Network:
        """The next /16 from 10.89.0.0 upward that overlaps no network and no route."""
        taken = [net.subnet for net in existing] + await routed_networks(self.ipr)
        for second_octet in range(AUTO_SUBNET_FIRST_OCTET, 256):
            candidate = IPv4Network(f"10.{second_octet}.0.0/16")
            if not any(candidate.overlaps(other) for other in taken):
                return candidate
        raise Conflict("no free /16 left in 10.89.0.0-10.255.255.255; pass --subnet")

    async def _bridge_name(
        self, wanted: str | None, existing: list[NetworkRecord], prefix: str
    ) -> str:
        """The name asked for, if it is a free interface name, else the next free
        <prefix>N (vbrN for bridges, vptN for a ptp network's dummy link)."""
        used = {net.bridge for net in existing} | await link_names(self.ipr)
        if wanted is not None:
            if not _IFNAME.match(wanted):
                raise InvalidArgument(
                    f"invalid bridge name {wanted!r}: at most 15 letters, digits, '_', '.', '-'"
                )
            if wanted in used:
                raise Conflict(f"bridge name {wanted} is already in use by another interface")
            return wanted
        index = 0
        while f"{prefix}{index}" in used:
            index += 1
        return f"{prefix}{index}"


def parse_subnet(text: str) -> IPv4Network:
    try:
        subnet = ip_network(text, strict=False)
    except ValueError:
        raise InvalidArgument(
            f"invalid subnet {text!r}: expected an IPv4 CIDR such as 10.89.0.0/16"
        ) from None
    if not isinstance(subnet, IPv4Network):
        raise InvalidArgument(f"invalid subnet {text!r}: only IPv4 is supported")
    if str(subnet) != text.strip():
        raise InvalidArgument(f"invalid subnet {text!r}: it should be {subnet}")
    if subnet.prefixlen > 30:
        raise InvalidArgument(f"invalid subnet {text!r}: the prefix must be /30 or shorter")
    for reserved, what in RESERVED_SUBNETS:
        if subnet.overlaps(reserved):
            raise InvalidArgument(f"invalid subnet {text}: it overlaps {reserved}, {what}")
    return subnet


def parse_gateway(text: str | None, subnet: IPv4Network) -> IPv4Address | None:
    """The gateway asked for (None: the driver's default)."""
    if text is None:
        return None
    try:
        gateway = ip_address(text)
    except ValueError:
        raise InvalidArgument(f"invalid gateway {text!r}: expected an IPv4 address") from None
    if not isinstance(gateway, IPv4Address) or gateway not in subnet:
        raise InvalidArgument(f"gateway {text} is not in subnet {subnet}")
    if gateway in (subnet.network_address, subnet.broadcast_address):
        raise InvalidArgument(f"gateway {text} is the network or broadcast address of {subnet}")
    return gateway


def parse_ip_range(text: str, subnet: IPv4Network) -> IPv4Network:
    """Docker's IPRange: a CIDR inside the subnet that dynamic addresses come from."""
    try:
        ip_range = ip_network(text, strict=False)
    except ValueError:
        raise InvalidArgument(f"invalid IP range {text!r}: expected an IPv4 CIDR") from None
    if not isinstance(ip_range, IPv4Network) or not ip_range.subnet_of(subnet):
        raise InvalidArgument(f"IP range {text} is not inside subnet {subnet}")
    return ip_range


def _check_no_overlap(subnet: IPv4Network, existing: list[NetworkRecord]) -> None:
    for net in existing:
        if subnet.overlaps(net.subnet):
            raise Conflict(f"subnet {subnet} overlaps with network {net.name} ({net.subnet})")
