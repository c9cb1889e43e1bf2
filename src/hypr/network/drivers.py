"""Network drivers: how a network's VMs are wired to the host (netavark's split).

`bridge`: a Linux bridge per network holds the gateway address; each VM's TAP is a port of
it, so the network's VMs share one layer-2 segment. `ptp` (point to point, like the CNI
plugin of that name, and Hyperfleet's layout): no bridge; each NIC gets a /30 of the
subnet, the host side (its first address) on the VM's TAP and the guest the second, so two
VMs only ever meet through the host's routing and firewall (isolation by construction). A
ptp network's own address (its `gateway` field, the subnet's last host address) sits alone
on a link of its own (a TAP no VM opens): its DNS server listens there, and no /30 holds
it.

The manager and the NIC service ask the driver of a network; everything else (firewall
sets, DNS, published ports) treats both alike.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Protocol

from pyroute2 import AsyncIPRoute

from hypr.errors import InvalidArgument
from hypr.network import bridge
from hypr.network.links import delete_link, link_index, owner_alias
from hypr.network.tap import create_tap
from hypr.state.networks import NetworkRecord

PTP_BLOCK = 4  # a /30 per NIC: network, host side, guest, broadcast
Range = tuple[int, int]


class NetworkDriver(Protocol):
    """What differs between drivers; the rest of hypr sees only records and TAPs."""

    link_prefix: str  # the network's own link is <prefix>N

    def check(self, subnet: IPv4Network, gateway: str | None, internal: bool) -> None:
        """Refuse what this driver cannot make of a create request."""
        ...

    def default_gateway(self, subnet: IPv4Network) -> IPv4Address: ...

    def pool(self, subnet: IPv4Network, gateway: IPv4Address) -> list[Range]:
        """The free ranges a new network's IPAM pool starts with: the guests' addresses."""
        ...

    async def ensure(self, ipr: AsyncIPRoute, net: NetworkRecord) -> None:
        """Make the network's own link exist with its address (idempotent)."""
        ...

    async def plug(
        self, ipr: AsyncIPRoute, tap: str, net: NetworkRecord, owner: str, address: IPv4Address
    ) -> None:
        """Create a VM NIC's TAP wired to the network (raises TapNameTaken if the name is)."""
        ...

    def guest_interface(self, net: NetworkRecord, address: IPv4Address) -> IPv4Interface: ...

    def nic_gateway(self, net: NetworkRecord, address: IPv4Address) -> IPv4Address:
        """The guest's default gateway: the host's address that the NIC faces."""
        ...


class BridgeDriver:
    link_prefix = "vbr"

    def check(self, subnet: IPv4Network, gateway: str | None, internal: bool) -> None:
        """Everything a bridge network can be is checked by the manager."""

    def default_gateway(self, subnet: IPv4Network) -> IPv4Address:
        return subnet.network_address + 1

    def pool(self, subnet: IPv4Network, gateway: IPv4Address) -> list[Range]:
        first, last = int(subnet.network_address) + 1, int(subnet.broadcast_address) - 1
        gw = int(gateway)
        ranges = [(first, gw - 1), (gw + 1, last)] if first <= gw <= last else [(first, last)]
        return [(lo, hi) for lo, hi in ranges if lo <= hi]

    async def ensure(self, ipr: AsyncIPRoute, net: NetworkRecord) -> None:
        await bridge.ensure_bridge(ipr, net.bridge, net.id, net.gateway, net.subnet)

    async def plug(
        self, ipr: AsyncIPRoute, tap: str, net: NetworkRecord, owner: str, address: IPv4Address
    ) -> None:
        await create_tap(ipr, tap, net.bridge, owner, mtu=1500)

    def guest_interface(self, net: NetworkRecord, address: IPv4Address) -> IPv4Interface:
        return IPv4Interface(f"{address}/{net.subnet.prefixlen}")

    def nic_gateway(self, net: NetworkRecord, address: IPv4Address) -> IPv4Address:
        return net.gateway


class PtpDriver:
    link_prefix = "vpt"

    def check(self, subnet: IPv4Network, gateway: str | None, internal: bool) -> None:
        if subnet.prefixlen > 29:
            raise InvalidArgument(f"a ptp network needs a /29 or larger subnet, not {subnet}")
        if gateway is not None:
            raise InvalidArgument(
                "a ptp network has no gateway of its own: each VM's is its TAP's address"
            )
        if internal:
            raise InvalidArgument("a ptp network cannot be --internal (use a bridge network)")

    def default_gateway(self, subnet: IPv4Network) -> IPv4Address:
        return subnet.broadcast_address - 1

    def pool(self, subnet: IPv4Network, gateway: IPv4Address) -> list[Range]:
        """The guest address of every /30 but the one that holds the DNS address."""
        start, end = int(subnet.network_address), int(subnet.broadcast_address)
        skip = int(gateway) - int(gateway) % PTP_BLOCK
        return [(b + 2, b + 2) for b in range(start, end, PTP_BLOCK) if b != skip]

    async def ensure(self, ipr: AsyncIPRoute, net: NetworkRecord) -> None:
        index = await link_index(ipr, net.bridge)
        created = index is None
        if index is None:
            # A TAP nobody opens: dummy links need a module that hosts may lack.
            await ipr.link("add", ifname=net.bridge, kind="tuntap", mode="tap")
            index = await link_index(ipr, net.bridge)
            assert index is not None
        try:
            await ipr.link("set", index=index, ifalias=owner_alias("network", net.id))
            await _ensure_address(ipr, index, IPv4Interface(f"{net.gateway}/32"))
            await ipr.link("set", index=index, state="up")
        except BaseException:
            if created:
                await delete_link(ipr, net.bridge)
            raise

    async def plug(
        self, ipr: AsyncIPRoute, tap: str, net: NetworkRecord, owner: str, address: IPv4Address
    ) -> None:
        """A TAP of its own with the host side of the NIC's /30: the kernel routes the /30
        to it. Strict reverse-path filtering makes it the anti-spoofing (a packet from the
        guest must come from its /30); route_localnet lets 127.0.0.1 reach published ports."""
        await create_tap(ipr, tap, None, owner, mtu=1500)
        try:
            index = await link_index(ipr, tap)
            assert index is not None
            await _ensure_address(ipr, index, IPv4Interface(f"{address - 1}/30"))
            conf = Path(f"/proc/sys/net/ipv4/conf/{tap}")
            (conf / "rp_filter").write_text("1\n")
            (conf / "route_localnet").write_text("1\n")
        except BaseException:
            await delete_link(ipr, tap)
            raise

    def guest_interface(self, net: NetworkRecord, address: IPv4Address) -> IPv4Interface:
        return IPv4Interface(f"{address}/30")

    def nic_gateway(self, net: NetworkRecord, address: IPv4Address) -> IPv4Address:
        return address - 1


DRIVERS: dict[str, NetworkDriver] = {"bridge": BridgeDriver(), "ptp": PtpDriver()}


def driver_of(net: NetworkRecord) -> NetworkDriver:
    return DRIVERS[net.driver]


async def _ensure_address(ipr: AsyncIPRoute, index: int, interface: IPv4Interface) -> None:
    addresses = {
        (a.get("address"), a["prefixlen"]) async for a in await ipr.addr("dump", index=index)
    }
    if (str(interface.ip), interface.network.prefixlen) not in addresses:
        await ipr.addr(
            "add", index=index, address=str(interface.ip), prefixlen=interface.network.prefixlen
        )
