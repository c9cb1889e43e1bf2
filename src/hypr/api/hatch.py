"""Hatch's `POST /vms` body over hypr's VMs (docs/api.md).

hypr's own body names an `image`; Hatch's never does, which is how the one route tells
them apart. A Hatch VM runs hyprd's default image (HYPR_DEFAULT_IMAGE, the built-in busybox
unless configured), idle until stopped, on the bridge network Hatch describes (`hatch`,
192.168.241.0/24 on the bridge `fcbridge`), with a port of the SSH pool forwarded to its
port 22; `enable_network: false` gives it no NIC at all. The answer is hypr's VM view,
which carries Hatch's fields (`state`, `guest_ip`, `guest_mac`, `tap_name`, `ssh_port`,
`enable_network`).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from hypr.api.machines import IDLE_COMMAND
from hypr.daemon.requests import NetworkAttachment, RunRequest
from hypr.network.manager import NetworkRequest

HATCH_NETWORK = NetworkRequest(name="hatch", subnet="192.168.241.0/24", bridge="fcbridge")


class HatchVmRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    guest_ip: str | None = None
    guest_mac: str | None = None
    vcpu_count: int = Field(default=1, ge=1)
    mem_mib: int = Field(default=256, ge=1)
    enable_network: bool = True
    user_data: str | None = None


def hatch_run_request(body: HatchVmRequest, image: str) -> RunRequest:
    networks = []
    if body.enable_network:
        networks = [
            NetworkAttachment(network=HATCH_NETWORK.name, ip=body.guest_ip, mac=body.guest_mac)
        ]
    return RunRequest(
        image=image,
        name=body.name,
        command=IDLE_COMMAND,
        vcpus=body.vcpu_count,
        memory_mib=body.mem_mib,
        networks=networks,
        ssh=body.enable_network,
        user_data=body.user_data,
    )
