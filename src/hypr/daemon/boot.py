"""Booting one VM, the longest step of `start`, kept apart from the lifecycle around it.

The VM manager locks the VM and checks its state; the booter does the rest in order:
intent (state `starting`), addresses and TAPs, observers, the guest's spec, the hypervisor,
then the agent. Every step it took is undone if a later one fails, and a daemon killed at
any step finds at its next start what it had begun (see reconcile.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from hypr import faults
from hypr.daemon.accel import AccelProbe
from hypr.daemon.metrics import VM_BOOT_SECONDS
from hypr.daemon.mounts import MountService
from hypr.daemon.nics import NicService
from hypr.daemon.observers import VmObserver
from hypr.daemon.reconcile import runtime_dir
from hypr.daemon.specs import guest_hosts
from hypr.daemon.supervision import OnExit, RunningVm, Supervisor
from hypr.daemon.userdata import UserDataBoot
from hypr.errors import HyprError
from hypr.guest.spec import GuestNic, GuestSpec, WorkloadSpec, kernel_args, spec_cpio
from hypr.images.store import Image, ImageStore
from hypr.network.names import now_rfc3339
from hypr.state.sems import VmSems
from hypr.state.vms import VmRecord, VmRepository
from hypr.vmm.adapter import SHARES_TAG, Accel, NicConfig, VmConfig, VmHandle, VmmAdapter

RUN_INTENT = faults.register("run.intent", "run: state 'starting' recorded, nothing made")
RUN_TAPS = faults.register("run.taps", "run: TAPs made and recorded, services told")
RUN_SPAWNED = faults.register("run.spawned", "run: QEMU spawned, its pid not recorded")
RUN_RECORDED = faults.register("run.recorded", "run: pid recorded, agent not ready")
RUN_READY = faults.register("run.ready", "run: agent ready, state 'running' recorded")


class VmBooter:
    """Boots VMs that the VM manager has locked and found not running."""

    def __init__(
        self,
        rows: VmRepository,
        images: ImageStore,
        accel: AccelProbe,
        nics: NicService,
        mounts: MountService,
        adapter: VmmAdapter,
        supervisor: Supervisor,
        observers: list[VmObserver],
        run_root: Path,
        log_path: Callable[[str], Path],
    ) -> None:
        self.rows = rows
        self.images = images
        self.accel = accel
        self.nics = nics
        self.mounts = mounts
        self.adapter = adapter
        self.supervisor = supervisor
        self.observers = observers  # the manager's own list: services join it later
        self.run_root = run_root
        self.log_path = log_path
        self.userdata = UserDataBoot(VmSems(rows.db))

    async def boot(self, vm: VmRecord, on_exit: OnExit, incoming: Path | None = None) -> None:
        """Intent, addresses, TAPs, hypervisor, agent. If the boot fails, TAPs and addresses
        are released and the VM is left exited with the reason. With `incoming` the VM
        resumes from that saved state (a snapshot) instead of booting."""
        image = self.images.get(vm.image)
        accel = await self.accel.wait()
        prior = {
            "state": vm.state, "started_at": vm.started_at, "finished_at": vm.finished_at,
            "exit_code": vm.exit_code, "error": vm.error,
        }  # fmt: skip
        self.rows.update(
            vm.id, state="starting", pid=None, started_at=now_rfc3339(),
            finished_at=None, exit_code=None, error=None,
        )  # fmt: skip
        faults.point(RUN_INTENT)
        run_dir = runtime_dir(self.run_root, vm.id)
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        try:
            nics = await self.nics.attach(vm)
            vm = self.rows.get(vm.id) or vm
            for observer in self.observers:
                await observer.vm_starting(vm)
        except BaseException:
            await self._undo(vm.id)
            self.rows.update(vm.id, **prior)  # nothing was made: as it was
            raise
        faults.point(RUN_TAPS)
        try:
            # Rendering refuses what the guest cannot be told (a NUL in argv, say).
            config = replace(self._config(vm, image, nics, run_dir, accel), incoming=incoming)
            handle = await self.adapter.create(config)
        except Exception as exc:
            await self._undo(vm.id)
            self.rows.update(vm.id, state="exited", error=str(exc), finished_at=now_rfc3339())
            raise HyprError(f"VM {vm.name} failed to start: {exc}") from exc
        faults.point(RUN_SPAWNED)
        self.rows.update(vm.id, pid=handle.pid, restarts=0)
        faults.point(RUN_RECORDED)
        await self._await_agent(vm, handle, on_exit)
        self.userdata.booted(vm)

    def _config(
        self,
        vm: VmRecord,
        image: Image,
        nics: list[tuple[str, GuestNic]],
        run_dir: Path,
        accel: Accel,
    ) -> VmConfig:
        """What the guest is told (its spec on the kernel line and in a cpio) and what
        QEMU is given."""
        layers = list(image.layers)
        shares, mounts = self.mounts.for_boot(vm.spec.mounts)
        hostname = vm.spec.hostname or vm.name
        user_data = self.userdata.for_boot(vm, hostname, nics, self.nics.dns_servers(vm))
        nics = user_data.nics
        guest = GuestSpec(
            hostname=user_data.hostname,
            nics=[nic for _, nic in nics],
            dns=user_data.dns,
            workload=WorkloadSpec(
                argv=vm.spec.argv,
                env=vm.spec.env,
                workdir=vm.spec.workdir,
                restart=vm.spec.restart,  # type: ignore[arg-type]
                max_restarts=vm.spec.max_restarts,
                user=vm.spec.user,
                stop_signal=vm.spec.stop_signal,
                hosts=guest_hosts(vm.spec, [nic for _, nic in nics]),
            ),
            layers=len(layers),
            shares_tag=SHARES_TAG if shares else None,
        )
        return VmConfig(
            vm_id=vm.id,
            vcpus=vm.spec.vcpus,
            memory_mib=vm.spec.memory_mib,
            kernel=Path(vm.spec.kernel) if vm.spec.kernel else self.accel.kernel,
            initrd=self.accel.initramfs,
            # The shared-folder modules travel only with the VMs that load them.
            initrd_append=(self.accel.shares_initramfs.read_bytes() if shares else b"")
            + spec_cpio(guest.workload, mounts, user_data.lines),
            cmdline=kernel_args(guest),
            layers=layers,
            nics=[NicConfig(tap, nic.mac) for tap, nic in nics],
            runtime_dir=run_dir,
            console_log=self.log_path(vm.id),
            accel=accel,
            shares=shares,
        )

    async def _await_agent(self, vm: VmRecord, handle: VmHandle, on_exit: OnExit) -> None:
        """The hypervisor runs: wait for its agent, or for its exit, whichever comes first.
        A boot whose agent never answers is killed, and its TAPs and addresses released."""
        running = RunningVm(handle)
        self.supervisor.watch(vm.id, running, on_exit)
        booted = asyncio.create_task(self.supervisor.attach_agent(vm.id, adopt=False))
        exited = asyncio.create_task(running.exited.wait())
        spawned = time.monotonic()
        await asyncio.wait({booted, exited}, return_when=asyncio.FIRST_COMPLETED)
        if booted.done() and booted.exception() is None:
            exited.cancel()
            VM_BOOT_SECONDS.observe(time.monotonic() - spawned)
            faults.point(RUN_READY)
            return
        if not exited.done():  # the agent never answered: give up on this boot
            await self.adapter.kill(handle)
            await running.exited.wait()
        booted.cancel()
        with contextlib.suppress(BaseException):
            await booted
        await self.nics.release(vm.id)
        final = self.rows.get(vm.id)
        reason = final.error if final and final.error else "the VM stopped during boot"
        raise HyprError(f"VM {vm.name} failed to boot: {reason}")

    async def _undo(self, vm_id: str) -> None:
        """Release what a boot that did not happen had taken (observers, TAPs, addresses)."""
        vm = self.rows.get(vm_id)
        if vm is not None:
            for observer in self.observers:
                with contextlib.suppress(Exception):
                    await observer.vm_stopped(vm)
        await self.nics.release(vm_id)
