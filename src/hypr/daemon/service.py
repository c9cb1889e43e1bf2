"""The daemon's object graph: state, kernel handles and managers, built once at start-up."""

from __future__ import annotations

import logging
from typing import NamedTuple

from pyroute2 import AsyncIPRoute

from hypr.api.auth import ApiKeys
from hypr.config import Settings
from hypr.daemon.ports import PortForwarder
from hypr.daemon.stacks import StackManager
from hypr.daemon.vms import VmManager
from hypr.images.store import ImageStore
from hypr.network.dns import DnsService
from hypr.network.firewall import NftablesFirewall
from hypr.network.ipam import Ipam
from hypr.network.manager import NetworkManager
from hypr.state.apikeys import ApiKeyRepository
from hypr.state.db import Database
from hypr.state.stacks import StackOpRepository
from hypr.state.vms import Endpoint
from hypr.vmm.qemu import QemuAdapter

log = logging.getLogger(__name__)


class VmCounts(NamedTuple):
    total: int
    running: int


class Daemon:
    """Everything the API handlers act on."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        settings.logs_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(settings.db_path)
        self.db.migrate()
        self.ipr = AsyncIPRoute()
        self.firewall = NftablesFirewall(settings.ssh_allowed_cidr)
        self.ipam = Ipam(self.db)
        self.networks = NetworkManager(self.db, self.ipr, self.firewall, self.ipam)
        self.images = ImageStore(settings.assets_dir / "images", settings.data_dir / "images")
        self.vms = VmManager(
            settings, self.db, self.ipr, self.networks, self.ipam, self.images, QemuAdapter()
        )
        self.networks.detach_hook = self.vms.detach_network
        ssh_pool = range(settings.ssh_port_min, settings.ssh_port_max + 1)
        self.ports = PortForwarder(self.db, self.firewall, ssh_pool)
        self.vms.observers.append(self.ports)
        self.networks.observers.append(self.ports)
        self.dns = DnsService(settings.run_dir, self.db, self.networks, self.firewall)
        self.networks.observers.append(self.dns)
        self.vms.observers.append(self.dns)
        self.stacks = StackManager(self.vms, self.networks, StackOpRepository(self.db))
        self.api_keys = ApiKeys(ApiKeyRepository(self.db))

    async def start(self) -> None:
        """Reconcile the kernel with the database before serving any request."""
        await self.ipr.setup_endpoint()
        await self.networks.reconcile(self.settings.default_subnet)
        await self.vms.reconcile()
        self.vms.resolve_accel_in_background()
        self.stacks.resume()

    @property
    def accel(self) -> str:
        """The accelerator in use, or the setting while the probe still runs."""
        resolved = self.vms.accel_in_use()
        if resolved is not None:
            return resolved
        return (
            f"{self.settings.accel} (probing)"
            if self.settings.accel == "auto"
            else self.settings.accel
        )

    def endpoints(self, network_id: str) -> list[Endpoint]:
        return self.vms.rows.endpoints(network_id)

    def vm_counts(self) -> VmCounts:
        return VmCounts(*self.vms.rows.counts())

    async def close(self) -> None:
        """Release handles; VMs and networks stay, so a restarted daemon adopts them."""
        await self.vms.shutdown()
        self.dns.close()
        self.ipr.close()
        self.db.close()
