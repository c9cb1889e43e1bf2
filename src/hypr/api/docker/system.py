"""`/_ping`, `/version` and `/info` as the Docker Engine answers them."""

from __future__ import annotations

import os
import platform
import socket

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse

from hypr import __version__
from hypr.api.deps import daemon_of
from hypr.api.docker.versions import API_VERSION, MIN_API_VERSION

router = APIRouter(tags=["docker system"])
PING_HEADERS = {
    "API-Version": API_VERSION,
    "OSType": "linux",
    "Docker-Experimental": "false",
    "Builder-Version": "1",
    "Cache-Control": "no-cache, no-store, must-revalidate",
    "Pragma": "no-cache",
}


@router.api_route("/_ping", methods=["GET", "HEAD"], response_class=PlainTextResponse)
async def ping(request: Request) -> Response:
    body = "" if request.method == "HEAD" else "OK"
    return PlainTextResponse(body, headers=PING_HEADERS)


@router.get("/version")
async def version() -> dict[str, object]:
    uname = platform.uname()
    engine = {
        "Version": __version__,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": _arch(),
        "KernelVersion": uname.release,
        "BuildTime": "",
    }
    return {
        "Platform": {"Name": "hypr (microVMs)"},
        "Components": [{"Name": "Engine", "Version": __version__, "Details": engine}],
        **engine,
    }


@router.get("/info")
async def info(request: Request) -> dict[str, object]:
    daemon = daemon_of(request)
    counts = daemon.vm_counts()
    uname = platform.uname()
    return {
        "ID": daemon.settings.data_dir.as_posix(),
        "Containers": counts.total,
        "ContainersRunning": counts.running,
        "ContainersPaused": 0,
        "ContainersStopped": counts.total - counts.running,
        "Images": len(daemon.images.all()),
        "Driver": "squashfs+overlay",
        "DriverStatus": [],
        "DockerRootDir": str(daemon.settings.data_dir),
        "Name": socket.gethostname(),
        "NCPU": os.cpu_count() or 1,
        "MemTotal": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        "OperatingSystem": f"hypr {__version__} (microVMs, {daemon.accel})",
        "OSType": "linux",
        "OSVersion": "",
        "Architecture": uname.machine,
        "KernelVersion": uname.release,
        "ServerVersion": __version__,
        "Runtimes": {"hypr": {"path": "qemu-system-x86_64"}},
        "DefaultRuntime": "hypr",
        "Isolation": "",
        "LoggingDriver": "json-file",
        "CgroupDriver": "none",
        "CgroupVersion": "2",
        "Plugins": {"Volume": ["local"], "Network": ["bridge"], "Log": ["json-file"]},
        "MemoryLimit": True,
        "SwapLimit": False,
        "IPv4Forwarding": True,
        "Debug": False,
        "ExperimentalBuild": False,
        "Labels": [],
        "SecurityOptions": [],
        "Swarm": {"LocalNodeState": "inactive", "ControlAvailable": False},
        "Warnings": [],
    }


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
