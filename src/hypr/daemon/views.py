"""Read models the API renders: a VM with what other services know about it, assembled by
the daemon so that handlers never reach into managers' rows or repositories."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from hypr.network.drivers import driver_of
from hypr.state.networks import NetworkRecord
from hypr.state.ports import PortForward
from hypr.state.vms import VmRecord


@dataclass(frozen=True)
class NicDetails:
    network: str  # the network's name (its id if it is gone)
    network_id: str
    ip: IPv4Address | None
    prefix_len: int | None
    gateway: IPv4Address | None
    mac: str
    tap: str | None


@dataclass(frozen=True)
class VmDetails:
    vm: VmRecord
    nics: list[NicDetails]
    forwards: list[PortForward]
    log_path: Path
    running: bool  # its hypervisor is alive and supervised
    mount_paths: list[str]  # the host path of each of vm.spec.mounts ("" for a tmpfs)

    @property
    def ssh_port(self) -> int | None:
        return next((fwd.host_port for fwd in self.forwards if fwd.ssh), None)


@dataclass(frozen=True)
class ContainerDetails:
    """A VM as Docker's container inspect and list show it."""

    details: VmDetails
    image_id: str  # sha256:...; "" when the image is gone
    health: str | None  # starting | healthy | unhealthy; None: the VM has no healthcheck
    failing_streak: int = 0


@dataclass(frozen=True)
class NetworkStats:
    """One network, as the metrics count it."""

    name: str
    internal: bool
    addresses: int


def nic_details(vm: VmRecord, networks: dict[str, NetworkRecord]) -> list[NicDetails]:
    details = []
    for nic in vm.nics:
        net = networks.get(nic.network_id)
        prefix_len, gateway = None, None
        if net is not None and nic.address is not None:
            driver = driver_of(net)
            prefix_len = driver.guest_interface(net, nic.address).network.prefixlen
            gateway = driver.nic_gateway(net, nic.address)
        details.append(
            NicDetails(
                network=net.name if net else nic.network_id,
                network_id=nic.network_id,
                ip=nic.address,
                prefix_len=prefix_len,
                gateway=gateway,
                mac=nic.mac,
                tap=nic.tap,
            )
        )
    return details
