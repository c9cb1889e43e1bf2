"""VM lifecycle: create, boot, stop, remove, composed of the request validation, the NIC
service, the supervisor and the reconciler.

`create` is synchronous on purpose: names, MACs and addresses are claimed in one SQLite
transaction with no await in between, so concurrent requests can never get the same ones.
`start` hands the VM, locked, to the booter (boot.py), which records its intent before it
acts and undoes every step it took if a later one fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

from pyroute2 import AsyncIPRoute

from hypr import faults
from hypr.config import Settings
from hypr.daemon.accel import AccelProbe
from hypr.daemon.boot import VmBooter
from hypr.daemon.exits import Exit, ExitWaits
from hypr.daemon.mounts import MountService
from hypr.daemon.nics import NicService
from hypr.daemon.observers import VmObserver
from hypr.daemon.reconcile import ACTIVE_STATES, RESTARTED_POLICIES, Reconciler, runtime_dir
from hypr.daemon.requests import RunRequest
from hypr.daemon.specs import build_spec
from hypr.daemon.supervision import RunningVm, Supervisor
from hypr.daemon.userdata import with_user_data
from hypr.daemon.volumes import VolumeService
from hypr.errors import Conflict, HyprError, NotFound
from hypr.guest.protocol import AgentClient
from hypr.guest.wire import AgentDisconnected, ExecResult
from hypr.images.store import ImageStore
from hypr.network.ipam import Ipam
from hypr.network.manager import NetworkManager
from hypr.network.names import check_vm_name, new_id, now_rfc3339
from hypr.state.db import Database
from hypr.state.vms import PublishRequest, VmRecord, VmRepository
from hypr.vmm.adapter import VmmAdapter

log = logging.getLogger(__name__)

REMEMBERED_EXITS = 256

RUN_CLAIMED = faults.register("run.claimed", "run: rows, MACs and addresses claimed")
RM_STOPPED = faults.register("rm.stopped", "rm: hypervisor stopped, rows still there")
RM_ROWS = faults.register("rm.rows", "rm: rows removed, files and services not yet")


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
        volumes: VolumeService,
        adapter: VmmAdapter,
    ) -> None:
        self.settings = settings
        self.db = db
        self.networks = networks
        self.images = images
        self.volumes = volumes
        self.mounts = MountService(volumes)
        self.adapter = adapter
        self.rows = VmRepository(db)
        self.nics = NicService(db, self.rows, ipr, networks, ipam)
        self.ipam = ipam
        self.supervisor = Supervisor(self.rows, adapter, settings.logs_dir)
        self.running = self.supervisor.running
        self.run_root = settings.run_dir / "vms"
        self._locks: dict[str, asyncio.Lock] = {}
        self.accel = AccelProbe(settings.accel, settings.assets_dir)
        self._tasks: set[asyncio.Task[None]] = set()  # restarts and --rm removals
        # Exit codes of VMs removed by --rm, so that a client waiting on them learns it.
        self._removed_exit_codes: dict[str, int | None] = {}
        self.exits = ExitWaits()  # Docker's wait for the next exit, or for the removal
        self.observers: list[VmObserver] = []
        self.on_use: Callable[[str], None] | None = None  # an exec session: idle management
        self.booter = VmBooter(
            self.rows, images, self.accel, self.nics, self.mounts, adapter, self.supervisor,
            self.observers, self.run_root, self.log_path,
        )  # fmt: skip

    # --- start-up ------------------------------------------------------------------------

    def resolve_accel_in_background(self) -> None:
        self.accel.start()

    async def reconcile(self) -> None:
        """Adopt or kill every hypervisor found, mark the others exited, sweep stale TAPs,
        addresses and files, then boot again the VMs whose restart policy asks for it."""
        reconciler = Reconciler(
            self.rows, self.nics, self.supervisor, self.adapter, self.run_root,
            self.settings.logs_dir,
        )  # fmt: skip
        adopted, to_restart = await reconciler.run(self._on_exit)
        for observer in self.observers:
            await observer.reconcile(adopted)
        for vm_id in to_restart:
            self._spawn(self._restart(vm_id))

    # --- queries -------------------------------------------------------------------------

    def get(self, ref: str) -> VmRecord:
        vm = self.rows.find(ref) if ref else None
        if vm is None:
            raise NotFound(f"no such VM: {ref!r}" if not ref else f"no such VM: {ref}")
        return vm

    def all(self) -> list[VmRecord]:
        return self.rows.all()

    def log_path(self, vm_id: str) -> Path:
        return self.settings.logs_dir / f"{vm_id}.log"

    # --- commands ------------------------------------------------------------------------

    async def run(self, req: RunRequest) -> VmRecord:
        vm = self.create(req)
        faults.point(RUN_CLAIMED)
        try:
            return await self.start(vm.id)
        except HyprError:
            if req.auto_remove:
                await self.remove(vm.id, force=True)
            raise

    def create(self, req: RunRequest) -> VmRecord:
        """Validate the request and claim name, MACs and addresses in one transaction."""
        image = self.images.get(req.image)
        if req.kernel is not None:
            kernel = self.images.boot_file(req.kernel, "kernel", "kernel")
            req = req.model_copy(update={"kernel": str(kernel)})
        req = with_user_data(req)
        spec = build_spec(req, image)
        name = check_vm_name(req.name) if req.name else self._generated_name()
        vm_id = new_id()
        with self.mounts.claim(spec.mounts) as mounts, self.db.transaction():
            if self.rows.name_taken(name):
                raise Conflict(f"the name {name} is already in use by another VM")
            vm = VmRecord(
                id=vm_id,
                name=name,
                image=image.reference,
                spec=replace(spec, mounts=mounts),
                state="created",
                created=now_rfc3339(),
                nics=self.nics.claim(vm_id, req.attachments, req.dhcp),
            )
            self.rows.add(vm)
            publish = PublishRequest(tuple(req.ports), req.ssh, req.publish_all)
            for observer in self.observers:
                observer.vm_created(vm, publish)
        log.info("created VM %s (%s)", name, vm_id[:12])
        return vm

    async def start(self, ref: str, incoming: Path | None = None) -> VmRecord:
        """Boot a VM, or with `incoming` resume it from that saved state."""
        vm = self.get(ref)
        async with self._lock(vm.id):
            vm = self.get(vm.id)
            if vm.state in ACTIVE_STATES:
                raise Conflict(f"VM {vm.name} is already running")
            await self.booter.boot(vm, self._on_exit, incoming)
        return self.get(vm.id)

    async def save_state(self, ref: str, target: Path, sleep: bool = False) -> int:
        """Write a running VM's whole state to `target`; it goes on running, or with
        `sleep` its hypervisor stops there and the VM is `sleeping`. The file's size."""
        vm = self.get(ref)
        async with self._lock(vm.id):
            running = self.running.get(vm.id)
            if running is None or self.get(vm.id).state != "running":
                raise Conflict(f"VM {vm.name} is not running: only a running VM has a state")
            size = await self.adapter.save_state(running.handle, target, resume=not sleep)
            if sleep:
                running.sleeping = running.stopping = True
                await self.adapter.kill(running.handle)
                await running.exited.wait()
        return size

    async def stop(self, ref: str, grace: float = 10.0) -> VmRecord:
        vm = self.get(ref)
        async with self._lock(vm.id):
            await self._stop(vm.id, grace)
        return self.get(vm.id)

    async def remove(self, ref: str, force: bool = False, volumes: bool = False) -> VmRecord:
        """Stop (with force) and remove a VM; with `volumes` (and always for --rm VMs) its
        anonymous volumes go too, as `docker rm -v` does."""
        vm = self.get(ref)
        async with self._lock(vm.id):
            vm = self.get(vm.id)
            if vm.state in ACTIVE_STATES:
                if not force:
                    raise Conflict(f"VM {vm.name} is running: stop it first, or use rm --force")
                await self._stop(vm.id, grace=0)
            last = self.rows.get(vm.id) or vm
            faults.point(RM_STOPPED)
            with self.db.transaction():
                self.ipam.release_owner(vm.id)
                self.rows.remove(vm.id)
            faults.point(RM_ROWS)
            if volumes or vm.spec.auto_remove:
                self.mounts.release(vm.spec.mounts)
            self.log_path(vm.id).unlink(missing_ok=True)
            shutil.rmtree(runtime_dir(self.run_root, vm.id), ignore_errors=True)
            for observer in self.observers:
                await observer.vm_removed(vm)
        self._locks.pop(vm.id, None)
        self.exits.removed(vm.id, Exit(last.exit_code, last.error))
        log.info("removed VM %s", vm.name)
        return vm

    async def wait(self, ref: str) -> int | None:
        """Return the exit code once the VM is not running any more (also with --rm)."""
        if ref in self._removed_exit_codes:
            return self._removed_exit_codes[ref]
        vm = self.get(ref)
        running = self.running.get(vm.id)
        if running is None and vm.state in ACTIVE_STATES:
            # The hypervisor is gone and its exit is being recorded (the observers run
            # first): the code comes with it.
            return (await self.exits.wait(vm.id, "exit")).code
        if running is None:
            return vm.exit_code
        await running.exited.wait()
        return running.exit_code

    async def exec(
        self,
        ref: str,
        argv: list[str],
        env: list[str],
        workdir: str | None,
        stdin: bytes,
        user: str | None = None,
    ) -> ExecResult:
        agent = self.agent(ref)
        return await agent.exec(argv, env, workdir, stdin, user=user)

    def mark_stopped(self, vm_id: str) -> VmRecord:
        """A sleeping VM (no hypervisor) stopped or about to be removed: it is exited."""
        self.rows.update(vm_id, state="exited", finished_at=now_rfc3339())
        return self.get(vm_id)

    def agent(self, ref: str) -> AgentClient:
        """The agent connection of a running VM, for exec sessions (a use of the VM)."""
        vm = self.get(ref)
        if self.on_use is not None:
            self.on_use(vm.id)
        running = self.running.get(vm.id)
        if running is None or vm.state != "running":
            raise Conflict(f"VM {vm.name} is not running")
        if running.agent is None or not running.agent.connected:
            raise Conflict(f"the agent of VM {vm.name} is not connected")
        return running.agent

    async def change_attachments(self, ref: str, change: Callable[[VmRecord], None]) -> VmRecord:
        """Change the NICs of a VM that is not running (Docker's network connect and
        disconnect) under its lock. A running VM is refused: QEMU's microvm machine has no
        bus that a virtio-mmio NIC could be hot-plugged into."""
        vm = self.get(ref)
        async with self._lock(vm.id):
            vm = self.get(vm.id)
            if vm.state in ACTIVE_STATES:
                raise Conflict(
                    f"VM {vm.name} is running and a microVM's NICs cannot be hot-plugged "
                    "(QEMU's microvm machine has no hotplug bus): stop it, then connect or "
                    "disconnect it, and start it again"
                )
            change(vm)
        return self.get(vm.id)

    async def detach_network(self, network_id: str) -> None:
        """Take every VM off a network that is being force-removed."""
        await self.nics.detach_network(network_id)

    async def shutdown(self) -> None:
        """Daemon exit: hang up on agents; the VMs keep running and are adopted later."""
        await self.supervisor.shutdown()
        for task in self._tasks:
            task.cancel()
        self.accel.cancel()

    # --- internals -----------------------------------------------------------------------

    def _lock(self, vm_id: str) -> asyncio.Lock:
        return self._locks.setdefault(vm_id, asyncio.Lock())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _generated_name(self) -> str:
        while True:
            name = f"vm-{secrets.token_hex(3)}"
            if not self.rows.name_taken(name):
                return name

    async def _on_exit(
        self, vm_id: str, running: RunningVm, exit_code: int | None, error: str | None
    ) -> None:
        """The hypervisor is gone: release what it held, record why, then remove (--rm) or
        boot again (restart policy) in a task of its own, outside the caller's locks."""
        vm = self.rows.get(vm_id)
        if vm is None:
            return
        stopped = replace(vm, exit_code=exit_code, error=error)  # what observers report
        for observer in self.observers:
            await observer.vm_stopped(stopped)
        await self.nics.release_taps(vm_id)
        if running.sleeping:  # its state is saved: it keeps its addresses and wakes later
            self.rows.update(vm_id, state="sleeping", pid=None)
            log.info("VM %s is sleeping", vm.name)
            return
        self.rows.update(
            vm_id, state="exited", pid=None, exit_code=exit_code, error=error,
            finished_at=now_rfc3339(),
        )  # fmt: skip
        log.info("VM %s exited (code %s%s)", vm.name, exit_code, f", {error}" if error else "")
        self.exits.exited(vm_id, Exit(exit_code, error))
        if running.stopping:
            return
        if vm.spec.auto_remove:
            self._removed_exit_codes[vm_id] = exit_code
            while len(self._removed_exit_codes) > REMEMBERED_EXITS:
                self._removed_exit_codes.pop(next(iter(self._removed_exit_codes)))
            self._spawn(self._remove_quietly(vm_id))
        elif running.ready and running.final_exit is None and vm.spec.restart in RESTARTED_POLICIES:
            # The guest restarts its workload itself; a hypervisor that died under it
            # (killed, crashed) is the daemon's to restart.
            self._spawn(self._restart(vm_id))

    async def _remove_quietly(self, vm_id: str) -> None:
        with contextlib.suppress(HyprError):
            await self.remove(vm_id, force=True)

    async def _restart(self, vm_id: str) -> None:
        vm = self.rows.get(vm_id)
        if vm is None:
            return
        log.info("restarting VM %s (restart policy %s)", vm.name, vm.spec.restart)
        try:
            await self.start(vm_id)
        except HyprError as exc:
            log.warning("cannot restart VM %s: %s", vm.name, exc.message)
        else:
            self.rows.update(vm_id, restarts=vm.restarts + 1)

    async def _stop(self, vm_id: str, grace: float) -> None:
        running = self.running.get(vm_id)
        if running is None:
            return
        running.stopping = True
        self.rows.update(vm_id, state="stopping")
        agent = running.agent
        if agent is not None and agent.connected and grace > 0:
            with contextlib.suppress(AgentDisconnected, TimeoutError, ConnectionError):
                async with asyncio.timeout(grace + 5):
                    running.final_exit = await agent.shutdown(grace)
        await self.adapter.stop(running.handle, grace=min(grace, 3.0) if grace else 0)
        await running.exited.wait()
