"""Assembles the read models of views.py from the services that each know a part of a VM.

A VM's row says what it is; its networks, port forwards, volume mountpoints, image id and
health live in other services. The facade hands the API these assembled views, so that no
handler joins them itself; this module is kept apart from views.py because the services it
reads import those dataclasses (the metrics do).
"""

from __future__ import annotations

from hypr.daemon.health import SpecHealth
from hypr.daemon.ports import PortForwarder
from hypr.daemon.views import ContainerDetails, VmDetails, nic_details
from hypr.daemon.vms import VmManager
from hypr.daemon.volumes import VolumeService
from hypr.images.store import ImageStore
from hypr.network.manager import NetworkManager
from hypr.state.vms import VmRecord

LISTED_WITHOUT_ALL = ("exited", "created")  # the states `ps` leaves out without --all


class ViewBuilder:
    """VMs as hypr's API shows them, and as Docker's containers."""

    def __init__(
        self,
        vms: VmManager,
        networks: NetworkManager,
        volumes: VolumeService,
        ports: PortForwarder,
        images: ImageStore,
        health: SpecHealth,
    ) -> None:
        self.vms = vms
        self.networks = networks
        self.volumes = volumes
        self.ports = ports
        self.images = images
        self.health = health

    def listed(self, all: bool) -> list[VmRecord]:
        """`ps`: the VMs with a hypervisor (every VM with `all`)."""
        return [vm for vm in self.vms.all() if all or vm.state not in LISTED_WITHOUT_ALL]

    def details(self, vms: list[VmRecord]) -> list[VmDetails]:
        networks = {net.id: net for net in self.networks.all()}
        volumes = {vol.name: vol.mountpoint for vol in self.volumes.all()}
        # One query for a list, not one per VM; one VM's own for inspect.
        forwards = (
            self.ports.forwards_by_vm()
            if len(vms) > 1
            else {vm.id: self.ports.forwards(vm.id) for vm in vms}
        )
        return [
            VmDetails(
                vm=vm,
                nics=nic_details(vm, networks),
                forwards=forwards.get(vm.id, []),
                log_path=self.vms.log_path(vm.id),
                running=vm.id in self.vms.running,
                mount_paths=[
                    volumes.get(m.source, "") if m.type == "volume" else m.source
                    for m in vm.spec.mounts
                ],
            )
            for vm in vms
        ]

    def containers(self, vms: list[VmRecord]) -> list[ContainerDetails]:
        """The details with what Docker adds: the image's id and the health."""
        image_ids = {
            ref: image.id for image in self.images.all() for ref in (*image.repo_tags, image.id)
        }
        checks = {vm.id: self.health.of(vm.id) for vm in vms}
        return [
            ContainerDetails(
                details=details,
                image_id=image_ids.get(details.vm.image, ""),
                health=check.status if (check := checks[details.vm.id]) else None,
                failing_streak=check.failures if check else 0,
            )
            for details in self.details(vms)
        ]
