"""Linux bridges: one per hypr network, with the gateway address on it."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from pyroute2 import AsyncIPRoute

from hypr.network.links import delete_link, link_index, owner_alias


async def ensure_bridge(
    ipr: AsyncIPRoute, name: str, network_id: str, gateway: IPv4Address, subnet: IPv4Network
) -> bool:
    """Make the bridge exist, up, with the gateway address; return True if it was created.

    Idempotent so that start-up reconciliation and `network create` share one path.
    """
    index = await link_index(ipr, name)
    created = index is None
    if index is None:
        await ipr.link("add", ifname=name, kind="bridge")
        index = await link_index(ipr, name)
        assert index is not None
    try:
        await ipr.link("set", index=index, ifalias=owner_alias("network", network_id))
        addresses = {
            (a.get("address"), a["prefixlen"])
            async for a in await ipr.addr("dump", index=index, family=2)
        }
        if (str(gateway), subnet.prefixlen) not in addresses:
            await ipr.addr("add", index=index, address=str(gateway), prefixlen=subnet.prefixlen)
        await ipr.link("set", index=index, state="up")
        _allow_localnet(name)
    except BaseException:
        if created:
            await delete_link(ipr, name)
        raise
    return created


async def remove_bridge(ipr: AsyncIPRoute, name: str) -> None:
    await delete_link(ipr, name)


def _allow_localnet(name: str) -> None:
    """Let the host reach published ports at 127.0.0.1: a DNAT-ed packet keeps its loopback
    source until postrouting masquerades it, and its replies come back through the bridge
    to 127.0.0.1, both of which the kernel drops as martians without route_localnet."""
    Path(f"/proc/sys/net/ipv4/conf/{name}/route_localnet").write_text("1\n")


def enable_ip_forwarding() -> None:
    """Routing between the bridges and the uplink needs forwarding on in this namespace."""
    path = Path("/proc/sys/net/ipv4/ip_forward")
    if path.read_text().strip() != "1":
        path.write_text("1\n")
