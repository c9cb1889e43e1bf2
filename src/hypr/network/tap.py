"""TAP devices: one per VM NIC, plugged into its network's bridge (or routed, for ptp)."""

from __future__ import annotations

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from hypr.network.links import delete_link, link_index, owner_alias

EEXIST = 17


class TapNameTaken(Exception):
    """A link with the chosen name exists already (not one of hypr's rows)."""


async def create_tap(
    ipr: AsyncIPRoute, name: str, bridge: str | None, owner: str, mtu: int
) -> None:
    """Create a persistent TAP, tag it as hypr's, attach it to `bridge` (None: none, the
    host routes to it) and bring it up.

    QEMU opens it by name later, so it must exist before the VM starts; a failure half-way
    removes what was made.
    """
    master = await link_index(ipr, bridge) if bridge is not None else 0
    if master is None:
        raise RuntimeError(f"bridge {bridge} does not exist")
    try:
        await ipr.link("add", ifname=name, kind="tuntap", mode="tap")
    except NetlinkError as exc:
        if exc.code == EEXIST:
            raise TapNameTaken(name) from exc
        raise
    try:
        index = await link_index(ipr, name)
        await ipr.link(
            "set", index=index, master=master, mtu=mtu, state="up",
            ifalias=owner_alias("nic", owner),
        )  # fmt: skip
    except BaseException:
        await delete_link(ipr, name)
        raise


async def delete_tap(ipr: AsyncIPRoute, name: str) -> None:
    await delete_link(ipr, name)
