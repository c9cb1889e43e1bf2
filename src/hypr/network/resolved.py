"""The host's own `.hypr` queries: per-bridge DNS settings in systemd-resolved, where it
serves hyprd's namespace."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from pathlib import Path

from hypr.network.dns_config import DOMAIN
from hypr.state.networks import NetworkRecord

log = logging.getLogger(__name__)

RESOLVED_API = Path("/run/systemd/resolve/io.systemd.Resolve")


def systemd_resolved_here() -> bool:
    """True where systemd-resolved serves hyprd's network namespace: it runs, and hyprd is in
    the namespace of PID 1 (resolved keys per-link settings by interface index, and an index
    names another interface in any other namespace)."""
    if not RESOLVED_API.exists() or shutil.which("resolvectl") is None:
        return False
    try:
        ours, init = os.stat("/proc/self/ns/net"), os.stat("/proc/1/ns/net")
    except OSError:
        return False
    return (ours.st_dev, ours.st_ino) == (init.st_dev, init.st_ino)


async def configure_resolved(net: NetworkRecord) -> None:
    """Send the host's `.hypr` queries to the bridge's server."""
    for args in (("dns", net.bridge, str(net.gateway)), ("domain", net.bridge, f"~{DOMAIN}")):
        proc = await asyncio.create_subprocess_exec(
            "resolvectl",
            *args,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await proc.communicate()
        if proc.returncode != 0:
            log.warning("resolvectl %s: %s", " ".join(args), stderr.decode().strip())
