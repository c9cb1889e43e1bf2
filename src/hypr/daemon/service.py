"""The daemon's object graph, built once at start-up, and the facade the API calls.

API handlers call only the methods of `Daemon`; the read models they render come from
daemon/views.py (assembled by details.py), so no handler reaches into a manager's rows or
repositories. The facade delegates: each method is a service's, named for the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import NamedTuple

from pyroute2 import AsyncIPRoute

from hypr.config import Settings
from hypr.daemon.apikeys import ApiKeys
from hypr.daemon.builds import BuildService
from hypr.daemon.console import Consoles
from hypr.daemon.containers import ContainerService
from hypr.daemon.details import ViewBuilder
from hypr.daemon.events import Event, EventBus
from hypr.daemon.execs import ExecConfig, ExecInstance, ExecRegistry
from hypr.daemon.exits import Exit
from hypr.daemon.health import SpecHealth
from hypr.daemon.idle import IdleService
from hypr.daemon.image_facade import ImageFacade
from hypr.daemon.images import ImageService
from hypr.daemon.nicguard import NicGuard
from hypr.daemon.ports import PortForwarder
from hypr.daemon.proxy import ProxyService
from hypr.daemon.requests import NetworkAttachment, RunRequest
from hypr.daemon.snapshots import Snapshot, SnapshotService
from hypr.daemon.stacks import StackManager
from hypr.daemon.views import ContainerDetails, NetworkStats, VmDetails
from hypr.daemon.vms import VmManager
from hypr.daemon.volumes import VolumeService
from hypr.errors import Conflict, HyprError
from hypr.guest.protocol import AgentClient
from hypr.guest.wire import ExecResult, TtySize
from hypr.images.bootfiles import BootKind
from hypr.images.content import ContentStore
from hypr.images.registry import RegistryAuth
from hypr.images.store import ImageStore
from hypr.network.dns import DnsService
from hypr.network.firewall import NftablesFirewall
from hypr.network.ipam import Ipam
from hypr.network.manager import NetworkManager, NetworkRequest
from hypr.state.apikeys import ApiKeyRepository
from hypr.state.db import Database
from hypr.state.networks import NetworkRecord
from hypr.state.stacks import StackOpRepository
from hypr.state.vms import Endpoint, VmRecord, VmRepository
from hypr.state.volumes import VolumeRecord
from hypr.vmm.qemu import QemuAdapter

log = logging.getLogger(__name__)

MAX_STOP_TIMEOUT = 3600.0


class VmCounts(NamedTuple):
    total: int
    running: int


def _private_dirs(data_dir: Path, logs_dir: Path) -> None:
    """Make the state and log directories root's alone (0700), and their files 0600: an
    older hyprd (or another umask) may have left them readable by everybody."""
    for directory in (data_dir, logs_dir):
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
    for path in logs_dir.iterdir():
        if path.is_file():
            path.chmod(0o600)


class Daemon(ImageFacade):
    """Everything the API handlers act on."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        _private_dirs(settings.data_dir, settings.logs_dir)
        self.db = Database(settings.db_path)
        self.db.migrate()
        self.ipr = AsyncIPRoute()
        self.firewall = NftablesFirewall(settings.ssh_allowed_cidr)
        self.ipam = Ipam(self.db)
        self.networks = NetworkManager(self.db, self.ipr, self.firewall, self.ipam)
        images_dir = settings.data_dir / "images"
        self.images = ImageStore(
            images_dir,
            self.db,
            (settings.assets_dir / "images", images_dir),
            settings.machine_roots,
        )
        self.content = ContentStore(images_dir)
        self.volumes = VolumeService(settings, self.db, VmRepository(self.db).all)
        self.vms = VmManager(
            settings, self.db, self.ipr, self.networks, self.ipam, self.images, self.volumes,
            QemuAdapter(),
        )  # fmt: skip
        self.networks.detach_hook = self.vms.detach_network
        self.image_service = ImageService(
            settings,
            self.images,
            self.content,
            self.vms.all,
            lambda vm_id, image_id: self.vms.rows.update(vm_id, image=image_id),
        )
        ssh_pool = range(settings.ssh_port_min, settings.ssh_port_max + 1)
        self.ports = PortForwarder(self.db, self.firewall, ssh_pool, settings.max_port_range)
        self.vms.observers.append(self.ports)
        self.networks.observers.append(self.ports)
        self.proxy = ProxyService(settings, self.vms.rows, self.ports)  # after ports: reads them
        self.vms.observers.append(self.proxy)
        self.nic_guard = NicGuard(self.firewall, self.networks.repo.find)
        self.vms.observers.append(self.nic_guard)
        self.networks.observers.append(self.nic_guard)
        self.dns = DnsService(settings.run_dir, self.db, self.networks, self.firewall)
        self.networks.observers.append(self.dns)
        self.vms.observers.append(self.dns)
        self.container_health = SpecHealth(self.vms)
        self.vms.observers.append(self.container_health)
        self.execs = ExecRegistry()
        self.containers = ContainerService(self.vms, self.networks, self.execs)
        self.stacks = StackManager(self.vms, self.networks, StackOpRepository(self.db))
        self.api_keys = ApiKeys(ApiKeyRepository(self.db))
        self.consoles = Consoles(self.vms)
        # Last among the observers: a creation that another observer refuses is no event.
        self.events = EventBus(self.networks.repo.find)
        self.vms.observers.append(self.events)
        self.networks.observers.append(self.events)
        self.builds = BuildService(
            settings, self.image_service, self.vms.accel, self.vms.adapter, self.vms.run_root
        )
        self.snapshots = SnapshotService(self.vms, settings.data_dir / "snapshots")
        self.idle = IdleService(self.vms, self.snapshots, self.ports)
        self.vms.on_use = self.idle.used
        self.proxy.wake = self._wake_for_request
        self.views = ViewBuilder(
            self.vms, self.networks, self.volumes, self.ports, self.images, self.container_health
        )

    async def start(self) -> None:
        """Reconcile the kernel with the database before serving any request."""
        await self.ipr.setup_endpoint()
        self.content.clean_partials()  # downloads a killed hyprd left half done
        self.images.clean_partials()
        await self.networks.reconcile(self.settings.default_subnet)
        self.volumes.reconcile()  # before VMs are adopted or booted again: they mount them
        await self.vms.reconcile()
        self.vms.resolve_accel_in_background()
        await self.builds.start()
        await self.idle.start()
        self.stacks.resume()

    @property
    def accel(self) -> str:
        """The accelerator in use, or the setting while the probe still runs."""
        return self.vms.accel.describe()

    # --- VM facade -----------------------------------------------------------------------

    def vm_details(self, vm: VmRecord) -> VmDetails:
        return self.views.details([vm])[0]

    def vm_view(self, ref: str) -> VmDetails:
        return self.vm_details(self.vms.get(ref))

    def vm_views(self, all: bool = False) -> list[VmDetails]:
        """`ps`: the VMs with a hypervisor (every VM with `all`)."""
        return self.views.details(self.views.listed(all))

    async def run_vm(self, req: RunRequest, auth: RegistryAuth | None = None) -> VmDetails:
        """Pull the image first if `req.pull` says so, then create (and start) the VM."""
        await self.image_service.ensure(req.image, req.pull, auth)
        vm = await self.vms.run(req) if req.start else self.vms.create(req)
        return self.vm_view(vm.id)

    async def run_on_network(self, req: RunRequest, network: NetworkRequest) -> VmDetails:
        """Run on a network of the layout the seeds' APIs describe (Hyperfleet's ptp,
        Hatch's bridge), made as asked at its first use (and removed again if that first
        use is refused before any VM is on it)."""
        made = None
        if self.networks.repo.find(network.name) is None:
            with contextlib.suppress(Conflict):  # a concurrent first use made it
                made = await self.networks.create(network)
        try:
            return await self.run_vm(req)
        except HyprError:
            if made is not None and self.networks.attached_count(made.id) == 0:
                with contextlib.suppress(HyprError):
                    await self.networks.remove(made.id)
            raise

    def boot_file(self, text: str, kind: BootKind, field: str) -> Path:
        """A kernel or root filesystem file under HYPR_MACHINE_ROOTS, else InvalidArgument
        naming `field`."""
        return self.images.boot_file(text, kind, field)

    async def start_vm(self, ref: str, snapshot: str | None = None) -> VmDetails:
        """Boot a VM; a sleeping one wakes where it slept; with `snapshot` it resumes
        where that snapshot saved it."""
        if snapshot is not None:
            return self.vm_details(await self.snapshots.restore(snapshot, ref))
        if self.vms.get(ref).state == "sleeping":
            return self.vm_details(await self.idle.wake(ref))
        return self.vm_details(await self.vms.start(ref))

    async def stop_vm(self, ref: str, grace: float) -> VmDetails:
        """`grace` was validated by the caller: 0 <= grace <= MAX_STOP_TIMEOUT."""
        vm = self.vms.get(ref)
        if vm.state == "sleeping":  # nothing runs: it only stops waking up
            await self.idle.forget(vm.id)
            return self.vm_details(self.vms.mark_stopped(vm.id))
        return self.vm_details(await self.vms.stop(ref, grace))

    async def remove_vm(self, ref: str, force: bool, volumes: bool = False) -> None:
        vm = self.vms.get(ref)
        if vm.state == "sleeping":
            await self.idle.forget(vm.id)
            self.vms.mark_stopped(vm.id)
        await self.vms.remove(ref, force=force, volumes=volumes)
        self.snapshots.remove_of(vm.id)

    async def _wake_for_request(self, vm_id: str) -> None:
        """The reverse proxy's hook: a request for a sleeping VM is held while it wakes."""
        await self.idle.wake(vm_id)

    async def create_snapshot(self, ref: str, name: str | None) -> Snapshot:
        return await self.snapshots.create(ref, name)

    def snapshot_list(self) -> list[Snapshot]:
        return self.snapshots.all()

    def remove_snapshot(self, name: str) -> Snapshot:
        return self.snapshots.remove(name)

    async def wait_vm(self, ref: str) -> int | None:
        return await self.vms.wait(ref)

    async def exec_vm(
        self,
        ref: str,
        argv: list[str],
        env: list[str],
        workdir: str | None,
        stdin: bytes,
        user: str | None = None,
    ) -> ExecResult:
        await self.idle.wake(ref)
        return await self.vms.exec(ref, argv, env, workdir, stdin, user)

    async def vm_agent(self, ref: str) -> AgentClient:
        """The agent of a running VM for an exec session; a sleeping VM wakes first."""
        await self.idle.wake(ref)
        return self.vms.agent(ref)

    def vm_is_running(self, vm_id: str) -> bool:
        return vm_id in self.vms.running

    # --- volume facade -------------------------------------------------------------------

    def volume_list(self, filters: Mapping[str, Sequence[str]]) -> list[VolumeRecord]:
        return self.volumes.select(filters)

    def volume(self, name: str) -> VolumeRecord:
        return self.volumes.get(name)

    def create_volume(
        self,
        name: str | None,
        driver: str,
        labels: Mapping[str, str],
        options: Mapping[str, str],
        stack: str | None = None,
    ) -> VolumeRecord:
        return self.volumes.create(name, labels, options, stack, driver=driver)

    def remove_volume(self, name: str, force: bool) -> None:
        self.volumes.remove(name, force)

    def prune_volumes(self, all: bool) -> tuple[list[str], int]:
        return self.volumes.prune(all)

    # --- network facade ------------------------------------------------------------------

    def network_list(self) -> list[NetworkRecord]:
        return self.networks.all()

    def network(self, ref: str) -> NetworkRecord:
        return self.networks.get(ref)

    async def create_network(self, req: NetworkRequest) -> NetworkRecord:
        return await self.networks.create(req)

    async def remove_network(self, ref: str, force: bool) -> None:
        await self.networks.remove(ref, force=force)

    async def prune_networks(
        self, only: Callable[[NetworkRecord], bool] = lambda net: True
    ) -> list[NetworkRecord]:
        return await self.networks.prune(only)

    # --- Docker face: networks and events ------------------------------------------------

    async def connect_network(self, net_ref: str, vm_ref: str, attach: NetworkAttachment) -> None:
        await self.containers.connect(net_ref, vm_ref, attach)

    async def disconnect_network(self, net_ref: str, vm_ref: str) -> None:
        await self.containers.disconnect(net_ref, vm_ref)

    def subscribe_events(self) -> AbstractContextManager[asyncio.Queue[Event]]:
        return self.events.subscribe()

    def recent_events(self, since_nano: int) -> list[Event]:
        return self.events.recent(since_nano)

    # --- Docker face: exec and streams -----------------------------------------------------

    def vm_console(
        self, ref: str, *, kernel: bool = False, tail: int | None = None, follow: bool = False
    ) -> AsyncIterator[bytes]:
        return self.consoles.logs(ref, kernel=kernel, tail=tail, follow=follow)

    def vm_attach(self, ref: str, *, logs: bool, stream: bool) -> AsyncIterator[bytes]:
        return self.consoles.attach(ref, logs=logs, stream=stream)

    def exec_create(self, ref: str, config: ExecConfig, size: TtySize | None) -> ExecInstance:
        return self.containers.exec_create(ref, config, size)

    def exec_instance(self, exec_id: str) -> ExecInstance:
        return self.execs.get(exec_id)

    async def exec_start(self, exec_id: str, detach: bool) -> ExecInstance:
        await self.idle.wake(self.execs.get(exec_id).vm_id)
        return await self.containers.exec_start(exec_id, detach)

    async def exec_resize(self, exec_id: str, size: TtySize) -> None:
        await self.execs.resize(exec_id, size)

    # --- Docker face: containers ---------------------------------------------------------

    def container_views(self, all: bool = True) -> list[ContainerDetails]:
        """Every VM (with `all`; else those with a hypervisor) as a container, newest first."""
        return self.views.containers(self.views.listed(all))

    def container_view(self, ref: str) -> ContainerDetails:
        return self.views.containers([self.vms.get(ref)])[0]

    def container_named(self, name: str) -> VmRecord | None:
        return self.containers.named(name)

    def create_container(self, req: RunRequest) -> VmDetails:
        return self.vm_details(self.containers.create(req))

    async def kill_container(self, ref: str, signum: int) -> None:
        await self.containers.kill(ref, signum)

    async def restart_container(self, ref: str, grace: float) -> None:
        await self.containers.restart(ref, grace)

    async def wait_container(self, ref: str, condition: str) -> Exit:
        return await self.containers.wait_for(ref, condition)

    async def rename_container(self, ref: str, name: str) -> None:
        await self.containers.rename(ref, name)

    async def top_container(self, ref: str, ps_args: str) -> tuple[list[str], list[list[str]]]:
        return await self.containers.top(ref, ps_args)

    async def prune_containers(self, wanted: Callable[[VmRecord], bool]) -> list[str]:
        return await self.containers.prune(wanted)

    # --- counts --------------------------------------------------------------------------

    def endpoints(self, network_id: str) -> list[Endpoint]:
        return self.vms.rows.endpoints(network_id)

    def vm_counts(self) -> VmCounts:
        return VmCounts(*self.vms.rows.counts())

    def vm_states(self) -> list[str]:
        return [vm.state for vm in self.vms.all()]

    def network_stats(self) -> list[NetworkStats]:
        return [
            NetworkStats(net.name, net.internal, self.networks.attached_count(net.id))
            for net in self.networks.all()
        ]

    async def check_login(self, server: str, auth: RegistryAuth) -> None:
        await self.image_service.check_login(server, auth)

    async def close(self) -> None:
        """Release handles; VMs and networks stay, so a restarted daemon adopts them."""
        await self.builds.close()
        await self.idle.close()
        await self.image_service.close()
        await self.vms.shutdown()
        self.dns.close()
        self.proxy.close()
        self.ipr.close()
        self.db.close()
