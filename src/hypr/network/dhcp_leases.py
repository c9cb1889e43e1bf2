"""dnsmasq's DHCP leases: read them, and let one go as its guest would."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def read_leases(path: Path) -> dict[str, str]:
    """MAC -> address of dnsmasq's lease file (`expiry mac address hostname client-id`)."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return {}
    return {fields[1]: fields[2] for fields in map(str.split, lines) if len(fields) >= 3}


async def release_lease(leases: Path, bridge: str, mac: str) -> None:
    """Tell the server on `bridge` that the guest with `mac` let its lease go (dhcp_release
    sends the DHCPRELEASE a guest would); its address stays reserved for the VM."""
    address = read_leases(leases).get(mac)
    if address is None:
        return
    try:
        proc = await asyncio.create_subprocess_exec(
            "dhcp_release",
            bridge,
            address,
            mac,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError:
        log.warning("cannot release the DHCP lease of %s: dhcp_release is not installed", mac)
        return
    _, stderr = await proc.communicate()
    if proc.returncode != 0:
        log.warning("dhcp_release %s %s: %s", bridge, address, stderr.decode().strip())
