"""/_ping, /version, /info."""

from __future__ import annotations

import platform

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from hypr import __version__
from hypr.api.deps import daemon_of
from hypr.api.models import InfoView, VersionView

router = APIRouter(tags=["system"])
API_VERSION = "1.0"


@router.get("/_ping", response_class=PlainTextResponse)
async def ping() -> str:
    return "OK"


@router.get("/version")
async def version() -> VersionView:
    uname = platform.uname()
    return VersionView(
        Version=__version__,
        ApiVersion=API_VERSION,
        Os=uname.system.lower(),
        Arch=uname.machine,
        KernelVersion=uname.release,
    )


@router.get("/info")
async def info(request: Request) -> InfoView:
    daemon = daemon_of(request)
    s = daemon.settings
    counts = daemon.vm_counts()
    return InfoView(
        ServerVersion=__version__,
        RunDir=str(s.run_dir),
        DataDir=str(s.data_dir),
        AssetsDir=str(s.assets_dir),
        Accelerator=daemon.accel,
        DefaultSubnet=str(s.default_subnet),
        Networks=len(daemon.network_list()),
        VMs=counts.total,
        VMsRunning=counts.running,
        SshPortRange=f"{s.ssh_port_min}-{s.ssh_port_max}",
        SshAllowedCidr=str(s.ssh_allowed_cidr),
    )
