"""Netlink access shared by the bridge and TAP modules.

Every link hypr creates carries an interface alias `hypr:<kind>:<owner>`, so reconciliation
can tell hypr's links from everybody else's without guessing from names.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv4Network
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

ALIAS_PREFIX = "hypr:"


@dataclass(frozen=True)
class OwnedLink:
    """A link that carries hypr's alias."""

    ifname: str
    index: int
    kind: str  # "network" or "nic"
    owner: str


def owner_alias(kind: str, owner: str) -> str:
    return f"{ALIAS_PREFIX}{kind}:{owner}"


async def link_index(ipr: AsyncIPRoute, ifname: str) -> int | None:
    found: list[int] = await ipr.link_lookup(ifname=ifname)
    return found[0] if found else None


async def delete_link(ipr: AsyncIPRoute, ifname: str) -> None:
    """Delete a link if it exists; deleting what is already gone is not an error."""
    index = await link_index(ipr, ifname)
    if index is None:
        return
    try:
        await ipr.link("del", index=index)
    except NetlinkError as exc:
        if exc.code != 19:  # ENODEV: raced with another removal
            raise


async def owned_links(ipr: AsyncIPRoute) -> list[OwnedLink]:
    """Every link in this namespace that hypr created."""
    result = []
    async for link in await ipr.link("dump"):
        alias = link.get("ifalias")
        if not alias or not alias.startswith(ALIAS_PREFIX):
            continue
        kind, _, owner = alias[len(ALIAS_PREFIX) :].partition(":")
        result.append(OwnedLink(link.get("ifname"), link["index"], kind, owner))
    return result


async def link_names(ipr: AsyncIPRoute) -> set[str]:
    return {link.get("ifname") async for link in await ipr.link("dump")}


async def routed_networks(ipr: AsyncIPRoute) -> list[IPv4Network]:
    """Destinations of the main routing table, to avoid picking a subnet already in use."""
    nets = []
    async for route in await ipr.route("dump", family=2, table=254):
        dst: Any = route.get("dst")
        if dst:
            nets.append(IPv4Network(f"{dst}/{route['dst_len']}", strict=False))
    return nets


async def host_addresses(ipr: AsyncIPRoute) -> list[IPv4Interface]:
    """Every IPv4 address of this namespace, with its prefix."""
    return [
        IPv4Interface(f"{addr.get('address')}/{addr['prefixlen']}")
        async for addr in await ipr.addr("dump", family=2)
    ]
