"""VM lifecycle and supervision: rows, addresses, TAPs, the hypervisor and the guest agent.

`create` is synchronous on purpose: names, MACs and addresses are claimed in one SQLite
transaction with no await in between, so concurrent requests can never get the same ones.
`start` then builds the kernel objects and boots; every step it took is undone if a later
one fails. A watcher task per running VM notices the hypervisor's exit (also of VMs adopted
after a daemon restart) and releases what the VM held.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import shutil
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, ip_address
from pathlib import Path

from pyroute2 import AsyncIPRoute

from hypr.config import Settings
from hypr.daemon.metrics import VM_BOOT_SECONDS
from hypr.daemon.observers import VmObserver
from hypr.errors import Conflict, HyprError, InvalidArgument, NotFound
from hypr.guest.assets import preferred_kernel
from hypr.guest.protocol import AgentClient, AgentDisconnected, ExecResult, WorkloadExit
from hypr.guest.spec import (
    PROBE_ARGS,
    PROBE_MARKER,
    GuestNic,
    GuestSpec,
    WorkloadSpec,
    kernel_args,
    spec_cpio,
)
from hypr.images.store import Image, ImageStore
from hypr.network.ipam import Ipam
from hypr.network.links import delete_link, owned_links
from hypr.network.manager import DEFAULT_NETWORK, NetworkManager
from hypr.network.names import check_vm_name, new_id, now_rfc3339
from hypr.network.tap import TapNameTaken, create_tap, delete_tap
from hypr.state.db import Database
from hypr.state.vms import NicRecord, VmRecord, VmRepository, VmSpec
from hypr.vmm.adapter import Accel, NicConfig, VmConfig, VmHandle, VmmAdapter
from hypr.vmm.qemu import AGENT_SOCKET, BootProbe, resolve_accel
from hypr.vmm.tsc import host_tsc_khz

log = logging.getLogger(__name__)

MIN_MEMORY_MIB = 96  # the guest kernel stops silently below this (PLATFORM.md)
MAX_VCPUS = 64
BOOT_TIMEOUT = 120.0  # TCG on a loaded 2-core machine is slow; KVM boots in well under 1 s
AGENT_CONNECT_TIMEOUT = 15.0
MAC_PATTERN = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
RESTART_POLICIES = ("no", "always", "on-failure", "unless-stopped")
ACTIVE_STATES = ("starting", "running", "stopping")
REMEMBERED_EXITS = 256


@dataclass(frozen=True)
class NetworkAttachment:
    network: str
    ip: str | None = None
    mac: str | None = None
    aliases: list[str] = field(default_factory=list)  # extra DNS names on this network


@dataclass(frozen=True)
class RunRequest:
    """`hypr run`, as the API receives it."""

    image: str
    name: str | None = None
    command: list[str] | None = None
    entrypoint: list[str] | None = None
    env: list[str] = field(default_factory=list)
    # An empty list is `--network none`: no NIC, no TAP, no address.
    networks: list[NetworkAttachment] = field(
        default_factory=lambda: [NetworkAttachment(DEFAULT_NETWORK)]
    )
    vcpus: int = 1
    memory_mib: int = 256
    restart: str = "no"
    workdir: str | None = None
    dhcp: bool = False
    auto_remove: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    hostname: str | None = None  # defaults to the VM's name
    ports: list[str] = field(default_factory=list)  # `-p` specs, claimed by PortForwarder
    ssh: bool = False  # forward a port of the SSH pool to guest port 22


@dataclass
class RunningVm:
    """What the daemon holds for a VM whose hypervisor process is alive."""

    handle: VmHandle
    agent: AgentClient | None = None
    final_exit: WorkloadExit | None = None
    stopping: bool = False
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    exit_code: int | None = None  # set by the watcher before `exited`
    watcher: asyncio.Task[None] | None = None
    attach: asyncio.Task[None] | None = None


class VmManager:
    """Creates, boots, stops, adopts and removes VMs."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        ipr: AsyncIPRoute,
        networks: NetworkManager,
        ipam: Ipam,
        images: ImageStore,
        adapter: VmmAdapter,
    ) -> None:
        self.settings = settings
        self.db = db
        self.ipr = ipr
        self.networks = networks
        self.ipam = ipam
        self.images = images
        self.adapter = adapter
        self.rows = VmRepository(db)
        self.running: dict[str, RunningVm] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._reserved_taps: set[str] = set()
        self._accel: asyncio.Task[Accel] | None = None
        # Exit codes of VMs removed by --rm, so that a client waiting on them learns it.
        self._removed_exit_codes: dict[str, int | None] = {}
        self.observers: list[VmObserver] = []

    # --- start-up ------------------------------------------------------------------------

    @property
    def kernel(self) -> Path:
        return preferred_kernel(self.settings.assets_dir)

    @property
    def initramfs(self) -> Path:
        return self.settings.assets_dir / "initramfs.cpio"

    def resolve_accel_in_background(self) -> None:
        """Probe for KVM (and measure the host TSC rate that TCG guests need) while the API
        already serves; the first boot waits for the answer."""

        async def resolve() -> Accel:
            await asyncio.to_thread(host_tsc_khz)
            probe = BootProbe(self.kernel, self.initramfs, PROBE_ARGS, PROBE_MARKER)
            return await resolve_accel(self.settings.accel, probe)

        self._accel = asyncio.create_task(resolve())

    def accel_in_use(self) -> Accel | None:
        """The probe's answer, once it has one."""
        task = self._accel
        if task is None or not task.done() or task.cancelled() or task.exception():
            return None
        return task.result()

    async def accel(self) -> Accel:
        if self._accel is None:
            self.resolve_accel_in_background()
        assert self._accel is not None
        return await self._accel

    async def reconcile(self) -> None:
        """Adopt VMs whose hypervisor survived a daemon restart, mark the others exited,
        and remove TAPs and addresses that belong to no VM."""
        for vm in self.rows.all():
            if vm.state not in ACTIVE_STATES:
                continue
            handle = self._handle(vm)
            if handle is not None and self.adapter.is_alive(handle):
                log.info("adopting VM %s (pid %s)", vm.name, vm.pid)
                running = RunningVm(handle)
                self._watch(vm.id, running)
                running.attach = asyncio.create_task(self._attach_agent(vm.id, adopt=True))
            else:
                log.info("VM %s exited while hyprd was not running", vm.name)
                self.rows.update(
                    vm.id,
                    state="exited",
                    pid=None,
                    finished_at=now_rfc3339(),
                    error="the hypervisor exited while hyprd was not running",
                )
                await self._release_taps(vm.id)
        live_taps = self.rows.taps_in_use()
        for link in await owned_links(self.ipr):
            if link.kind == "nic" and link.ifname not in live_taps:
                log.info("removing stale TAP %s", link.ifname)
                await delete_link(self.ipr, link.ifname)
        known = {vm.id for vm in self.rows.all()}
        for net in self.networks.all():
            for address, owner in self.ipam.allocations(net.id).items():
                if owner not in known:
                    log.info("releasing stale address %s on %s", address, net.name)
                    self.ipam.release(net.id, address)
        adopted = [vm for vm in self.rows.all() if vm.id in self.running]
        for observer in self.observers:
            await observer.reconcile(adopted)

    # --- queries -------------------------------------------------------------------------

    def get(self, ref: str) -> VmRecord:
        vm = self.rows.find(ref)
        if vm is None:
            raise NotFound(f"no such VM: {ref}")
        return vm

    def all(self) -> list[VmRecord]:
        return self.rows.all()

    def log_path(self, vm_id: str) -> Path:
        return self.settings.logs_dir / f"{vm_id}.log"

    # --- commands ------------------------------------------------------------------------

    async def run(self, req: RunRequest) -> VmRecord:
        vm = self.create(req)
        try:
            return await self.start(vm.id)
        except HyprError:
            if req.auto_remove:
                await self.remove(vm.id, force=True)
            raise

    def create(self, req: RunRequest) -> VmRecord:
        """Validate the request and claim name, MACs and addresses in one transaction."""
        image = self.images.get(req.image)
        spec = self._spec(req, image)
        name = check_vm_name(req.name) if req.name else self._generated_name()
        vm_id = new_id()
        with self.db.transaction():
            if self.rows.name_taken(name):
                raise Conflict(f"the name {name} is already in use by another VM")
            nics: list[NicRecord] = []
            for idx, attachment in enumerate(req.networks):
                net = self.networks.get(attachment.network)
                if any(n.network_id == net.id for n in nics):
                    raise InvalidArgument(f"VM joins network {net.name} twice")
                mac = self._claim_mac(attachment.mac)
                address = self._claim_address(net.id, vm_id, attachment.ip)
                nics.append(NicRecord(vm_id, idx, net.id, mac, address, None))
            vm = VmRecord(
                id=vm_id,
                name=name,
                image=image.reference,
                spec=spec,
                state="created",
                created=now_rfc3339(),
                nics=tuple(nics),
            )
            self.rows.add(vm)
            for observer in self.observers:
                observer.vm_created(vm, req)
        log.info("created VM %s (%s)", name, vm_id[:12])
        return vm

    async def start(self, ref: str) -> VmRecord:
        vm = self.get(ref)
        async with self._lock(vm.id):
            vm = self.get(vm.id)
            if vm.state in ACTIVE_STATES:
                raise Conflict(f"VM {vm.name} is already running")
            await self._boot(vm)
        return self.get(vm.id)

    async def stop(self, ref: str, timeout: float = 10.0) -> VmRecord:
        vm = self.get(ref)
        async with self._lock(vm.id):
            await self._stop(vm.id, timeout)
        return self.get(vm.id)

    async def remove(self, ref: str, force: bool = False) -> VmRecord:
        vm = self.get(ref)
        async with self._lock(vm.id):
            vm = self.get(vm.id)
            if vm.state in ACTIVE_STATES:
                if not force:
                    raise Conflict(f"VM {vm.name} is running: stop it first, or use rm --force")
                await self._stop(vm.id, timeout=0)
            with self.db.transaction():
                self.ipam.release_owner(vm.id)
                self.rows.remove(vm.id)
            self.log_path(vm.id).unlink(missing_ok=True)
            shutil.rmtree(self._runtime_dir(vm.id), ignore_errors=True)
            for observer in self.observers:
                await observer.vm_removed(vm)
        self._locks.pop(vm.id, None)
        log.info("removed VM %s", vm.name)
        return vm

    async def wait(self, ref: str) -> int | None:
        """Return the exit code once the VM is not running any more (also with --rm)."""
        if ref in self._removed_exit_codes:
            return self._removed_exit_codes[ref]
        vm = self.get(ref)
        running = self.running.get(vm.id)
        if running is None:
            return vm.exit_code
        await running.exited.wait()
        return running.exit_code

    async def exec(
        self, ref: str, argv: list[str], env: list[str], workdir: str | None, stdin: bytes
    ) -> ExecResult:
        agent = self.agent(ref)
        return await agent.exec(argv, env, workdir, stdin)

    def agent(self, ref: str) -> AgentClient:
        """The agent connection of a running VM, for exec sessions."""
        vm = self.get(ref)
        running = self.running.get(vm.id)
        if running is None or vm.state != "running":
            raise Conflict(f"VM {vm.name} is not running")
        if running.agent is None or not running.agent.connected:
            raise Conflict(f"the agent of VM {vm.name} is not connected")
        return running.agent

    async def detach_network(self, network_id: str) -> None:
        """Take every VM off a network that is being force-removed."""
        for vm in self.rows.all():
            for nic in vm.nics:
                if nic.network_id != network_id:
                    continue
                if nic.tap:
                    await delete_tap(self.ipr, nic.tap)
                with self.db.transaction():
                    if nic.address is not None:
                        self.ipam.release(network_id, nic.address)
                    self.rows.remove_nic(vm.id, nic.idx)
                log.info("detached VM %s from network %s", vm.name, network_id[:12])

    async def shutdown(self) -> None:
        """Daemon exit: hang up on agents; the VMs keep running and are adopted later."""
        for running in self.running.values():
            if running.watcher is not None:
                running.watcher.cancel()
            if running.agent is not None:
                await running.agent.close()
        if self._accel is not None and not self._accel.done():
            self._accel.cancel()

    # --- internals -----------------------------------------------------------------------

    def _lock(self, vm_id: str) -> asyncio.Lock:
        return self._locks.setdefault(vm_id, asyncio.Lock())

    def _runtime_dir(self, vm_id: str) -> Path:
        # Short, because Unix socket paths inside it must stay under 108 bytes.
        return self.settings.run_dir / "vms" / vm_id[:16]

    def _handle(self, vm: VmRecord) -> VmHandle | None:
        if vm.pid is None:
            return None
        run = self._runtime_dir(vm.id)
        return VmHandle(vm.id, vm.pid, run, run / AGENT_SOCKET)

    def _spec(self, req: RunRequest, image: Image) -> VmSpec:
        if not MIN_MEMORY_MIB <= req.memory_mib <= 1024 * 1024:
            raise InvalidArgument(
                f"memory {req.memory_mib} MiB is below the {MIN_MEMORY_MIB} MiB "
                "the guest kernel needs to boot"
                if req.memory_mib < MIN_MEMORY_MIB
                else f"memory {req.memory_mib} MiB is too large"
            )
        if not 1 <= req.vcpus <= MAX_VCPUS:
            raise InvalidArgument(f"cpus must be between 1 and {MAX_VCPUS}")
        policy, _, count = req.restart.partition(":")
        if policy not in RESTART_POLICIES or (
            count and (policy != "on-failure" or not count.isdigit())
        ):
            raise InvalidArgument(
                f"invalid restart policy {req.restart!r}: use no, always, unless-stopped, "
                "on-failure or on-failure:N"
            )
        for item in req.env:
            if "=" not in item or item.startswith("="):
                raise InvalidArgument(f"invalid environment variable {item!r}: expected K=V")
        entrypoint = req.entrypoint if req.entrypoint is not None else image.entrypoint
        command = req.command if req.command else image.cmd
        argv = [*entrypoint, *command]
        if not argv:
            raise InvalidArgument(f"no command given and image {image.reference} has none")
        return VmSpec(
            argv=argv,
            env=[*image.env, *req.env],
            workdir=req.workdir or image.workdir,
            vcpus=req.vcpus,
            memory_mib=req.memory_mib,
            restart="always" if policy == "unless-stopped" else policy,
            requested_ips=[attachment.ip for attachment in req.networks],
            aliases=[list(attachment.aliases) for attachment in req.networks],
            hostname=check_vm_name(req.hostname) if req.hostname else None,
            max_restarts=int(count) if count else 0,
            dhcp=req.dhcp,
            auto_remove=req.auto_remove,
            labels=dict(req.labels),
        )

    def _generated_name(self) -> str:
        while True:
            name = f"vm-{secrets.token_hex(3)}"
            if not self.rows.name_taken(name):
                return name

    def _claim_mac(self, requested: str | None) -> str:
        if requested is not None:
            mac = requested.lower()
            if not MAC_PATTERN.match(mac) or int(mac[:2], 16) & 1 or mac == "00:00:00:00:00:00":
                raise InvalidArgument(
                    f"invalid MAC address {requested!r}: expected a unicast "
                    "address such as 02:fc:00:00:00:01"
                )
            if self.rows.mac_taken(mac):
                raise Conflict(f"MAC address {mac} is already in use")
            return mac
        while True:
            mac = "02:fc:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(4))
            if not self.rows.mac_taken(mac):
                return mac

    def _claim_address(self, network_id: str, vm_id: str, requested: str | None) -> IPv4Address:
        if requested is not None:
            return self.ipam.reserve(network_id, _parse_ip(requested), vm_id)
        return self.ipam.allocate(network_id, vm_id)

    def _claim_addresses(self, vm: VmRecord) -> VmRecord:
        """Give back addresses to NICs that lost theirs in a failed boot."""
        with self.db.transaction():
            for nic in vm.nics:
                if nic.address is None:
                    requested = (vm.spec.requested_ips + [None] * (nic.idx + 1))[nic.idx]
                    address = self._claim_address(nic.network_id, vm.id, requested)
                    self.rows.set_address(vm.id, nic.idx, address)
        return self.rows.get(vm.id) or vm

    def _release_addresses(self, vm_id: str) -> None:
        vm = self.rows.get(vm_id)
        if vm is None:
            return
        with self.db.transaction():
            for nic in vm.nics:
                if nic.address is not None:
                    self.ipam.release(nic.network_id, nic.address)
                    self.rows.set_address(vm_id, nic.idx, None)

    async def _boot(self, vm: VmRecord) -> None:
        """Addresses, TAPs, hypervisor, agent. If the boot fails, TAPs and addresses are
        released and the VM is left exited with the reason."""
        image = self.images.get(vm.image)
        accel = await self.accel()
        vm = self._claim_addresses(vm)
        try:
            nics = await self._create_taps(vm)
            vm = self.rows.get(vm.id) or vm
            for observer in self.observers:
                await observer.vm_starting(vm)
        except BaseException:
            await self._undo_boot(vm.id)
            raise
        run_dir = self._runtime_dir(vm.id)
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        try:
            # Rendering refuses what the guest cannot be told (a NUL in argv, say).
            guest = GuestSpec(
                hostname=vm.spec.hostname or vm.name,
                nics=[nic for _, nic in nics],
                dns=self._dns_servers(vm),
                workload=WorkloadSpec(
                    argv=vm.spec.argv,
                    env=vm.spec.env,
                    workdir=vm.spec.workdir,
                    restart=vm.spec.restart,  # type: ignore[arg-type]
                    max_restarts=vm.spec.max_restarts,
                ),
            )
            config = VmConfig(
                vm_id=vm.id,
                vcpus=vm.spec.vcpus,
                memory_mib=vm.spec.memory_mib,
                kernel=self.kernel,
                initrd=self.initramfs,
                initrd_append=spec_cpio(guest.workload),
                cmdline=kernel_args(guest),
                rootfs=image.rootfs,
                nics=[NicConfig(tap, nic.mac) for tap, nic in nics],
                runtime_dir=run_dir,
                console_log=self.log_path(vm.id),
                accel=accel,
            )
            handle = await self.adapter.create(config)
        except Exception as exc:
            await self._undo_boot(vm.id)
            self.rows.update(vm.id, state="exited", error=str(exc), finished_at=now_rfc3339())
            raise HyprError(f"VM {vm.name} failed to start: {exc}") from exc
        self.rows.update(
            vm.id, state="starting", pid=handle.pid, started_at=now_rfc3339(),
            finished_at=None, exit_code=None, error=None, restarts=0,
        )  # fmt: skip
        running = RunningVm(handle)
        self._watch(vm.id, running)
        booted = asyncio.create_task(self._attach_agent(vm.id, adopt=False))
        exited = asyncio.create_task(running.exited.wait())
        spawned = time.monotonic()
        await asyncio.wait({booted, exited}, return_when=asyncio.FIRST_COMPLETED)
        if booted.done() and booted.exception() is None:
            exited.cancel()
            VM_BOOT_SECONDS.observe(time.monotonic() - spawned)
            return
        if not exited.done():  # the agent never answered: give up on this boot
            await self.adapter.kill(handle)
            await running.exited.wait()
        booted.cancel()
        with contextlib.suppress(BaseException):
            await booted
        self._release_addresses(vm.id)
        final = self.rows.get(vm.id)
        reason = final.error if final and final.error else "the VM stopped during boot"
        raise HyprError(f"VM {vm.name} failed to boot: {reason}")

    async def _undo_boot(self, vm_id: str) -> None:
        """Release what a boot that did not happen had taken (observers, TAPs, addresses)."""
        vm = self.rows.get(vm_id)
        if vm is not None:
            for observer in self.observers:
                with contextlib.suppress(Exception):
                    await observer.vm_stopped(vm)
        await self._release_taps(vm_id)
        self._release_addresses(vm_id)

    async def _attach_agent(self, vm_id: str, adopt: bool) -> None:
        """Connect to the guest agent and wait until it reports ready."""
        running = self.running.get(vm_id)
        if running is None:
            return

        def on_exit(event: WorkloadExit) -> None:
            running.final_exit = event
            self.rows.update(vm_id, restarts=event.restarts)

        try:
            agent = await AgentClient.connect(
                running.handle.agent_socket, AGENT_CONNECT_TIMEOUT, on_workload_exit=on_exit
            )
            running.agent = agent
            state = await agent.wait_ready(BOOT_TIMEOUT)
        except (TimeoutError, ConnectionError, OSError) as exc:
            if adopt:
                log.warning("cannot reach the agent of adopted VM %s: %s", vm_id[:12], exc)
                return
            raise
        if vm_id in self.running and not running.stopping:
            self.rows.update(vm_id, state="running", restarts=state.restarts)

    def _watch(self, vm_id: str, running: RunningVm) -> None:
        self.running[vm_id] = running
        running.watcher = asyncio.create_task(self._supervise(vm_id, running))

    async def _supervise(self, vm_id: str, running: RunningVm) -> None:
        """Wait for the hypervisor to exit, then record why and release what it held."""
        try:
            await self.adapter.wait(running.handle)
        except asyncio.CancelledError:
            return  # daemon shutdown: the VM lives on and is adopted at the next start
        vm = self.rows.get(vm_id)
        exit_code, error = self._exit_status(running)
        if running.agent is not None:
            await running.agent.close()
        with contextlib.suppress(OSError):
            await self.adapter.delete(running.handle)
        if vm is not None:
            for observer in self.observers:
                await observer.vm_stopped(vm)
            await self._release_taps(vm_id)
            self.rows.update(
                vm_id, state="exited", pid=None, exit_code=exit_code, error=error,
                finished_at=now_rfc3339(),
            )  # fmt: skip
            log.info("VM %s exited (code %s%s)", vm.name, exit_code, f", {error}" if error else "")
        self.running.pop(vm_id, None)
        running.exit_code = exit_code
        running.exited.set()
        if vm is not None and vm.spec.auto_remove and not running.stopping:
            self._removed_exit_codes[vm_id] = exit_code
            while len(self._removed_exit_codes) > REMEMBERED_EXITS:
                self._removed_exit_codes.pop(next(iter(self._removed_exit_codes)))
            with contextlib.suppress(HyprError):
                await self.remove(vm_id, force=True)

    def _exit_status(self, running: RunningVm) -> tuple[int | None, str | None]:
        if running.final_exit is not None:
            return running.final_exit.exit_code, None
        if running.stopping:
            return 137, None  # killed before the agent could report: as docker's SIGKILL
        agent_state = running.agent.state if running.agent else None
        if agent_state is not None and agent_state.exit_code is not None:
            return agent_state.exit_code, None
        return None, self._failure_reason(running.handle)

    def _failure_reason(self, handle: VmHandle) -> str:
        """The most telling line of what QEMU and the guest printed before dying."""
        candidates: list[str] = []
        for path in (handle.runtime_dir / "qemu.stderr", self.log_path(handle.vm_id)):
            with contextlib.suppress(OSError):
                candidates += path.read_text(errors="replace").strip().splitlines()[-20:]
        for line in reversed(candidates):
            lowered = line.lower()
            if any(word in lowered for word in ("panic", "qemu", "error", "kestrel:")):
                return line.strip()[:300]
        return "the hypervisor exited before the guest agent was ready"

    async def _stop(self, vm_id: str, timeout: float) -> None:
        running = self.running.get(vm_id)
        if running is None:
            return
        running.stopping = True
        self.rows.update(vm_id, state="stopping")
        agent = running.agent
        if agent is not None and agent.connected and timeout > 0:
            with contextlib.suppress(AgentDisconnected, TimeoutError, ConnectionError):
                async with asyncio.timeout(timeout + 5):
                    running.final_exit = await agent.shutdown(timeout)
        await self.adapter.stop(running.handle, timeout=min(timeout, 3.0) if timeout else 0)
        await running.exited.wait()

    async def _create_taps(self, vm: VmRecord) -> list[tuple[str, GuestNic]]:
        """A TAP per NIC, and what the guest is told about that NIC."""
        nics = []
        for nic in vm.nics:
            net = self.networks.get(nic.network_id)
            tap = await self._new_tap(vm.id, net.bridge)
            self.rows.set_tap(vm.id, nic.idx, tap)
            self._reserved_taps.discard(tap)
            address = IPv4Interface(f"{nic.address}/{net.subnet.prefixlen}")
            nics.append(
                (
                    tap,
                    GuestNic(
                        mac=nic.mac,
                        address=None if vm.spec.dhcp else address,
                        gateway=net.gateway,
                    ),
                )
            )
        return nics

    async def _new_tap(self, vm_id: str, bridge: str) -> str:
        while True:
            used = self.rows.taps_in_use() | self._reserved_taps
            index = 0
            while f"tap{index}" in used:
                index += 1
            name = f"tap{index}"
            self._reserved_taps.add(name)
            try:
                await create_tap(self.ipr, name, bridge, vm_id, mtu=1500)
                return name
            except TapNameTaken:
                continue  # a foreign link has that name; keep it reserved and try the next
            except BaseException:
                self._reserved_taps.discard(name)
                raise

    async def _release_taps(self, vm_id: str) -> None:
        vm = self.rows.get(vm_id)
        if vm is None:
            return
        for nic in vm.nics:
            if nic.tap:
                await delete_tap(self.ipr, nic.tap)
                self.rows.set_tap(vm_id, nic.idx, None)

    def _dns_servers(self, vm: VmRecord) -> list[str]:
        """Each network's gateway answers DNS for the VMs on it."""
        servers = []
        for nic in vm.nics:
            gateway = str(self.networks.get(nic.network_id).gateway)
            if gateway not in servers:
                servers.append(gateway)
        return servers


def _parse_ip(text: str) -> IPv4Address:
    try:
        address = ip_address(text)
    except ValueError:
        raise InvalidArgument(f"invalid IP address {text!r}") from None
    if not isinstance(address, IPv4Address):
        raise InvalidArgument(f"invalid IP address {text!r}: only IPv4 is supported")
    return address
