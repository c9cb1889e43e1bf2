"""At daemon start: make the kernel and the processes match the database, whatever happened.

Every hypr QEMU under this daemon's run dir is found by its command line, not only those a
row names: a daemon killed between spawning a hypervisor and recording its pid left one that
no row knows. A hypervisor whose row wants it running is adopted; any other is killed and
its TAPs released. A row that wants a VM running whose hypervisor is gone is marked exited,
and restarted when its policy says so.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

from hypr.daemon.nics import NicService
from hypr.daemon.supervision import OnExit, RunningVm, Supervisor
from hypr.network.names import now_rfc3339
from hypr.state.vms import VmRecord, VmRepository
from hypr.vmm.adapter import VmHandle, VmmAdapter
from hypr.vmm.qemu import AGENT_SOCKET

log = logging.getLogger(__name__)

ACTIVE_STATES = ("starting", "running", "stopping")
RESTARTED_POLICIES = ("always", "on-failure")
GONE_WHILE_DOWN = "the hypervisor exited while hyprd was not running"


def runtime_dir(run_root: Path, vm_id: str) -> Path:
    # Short, because Unix socket paths inside it must stay under 108 bytes.
    return run_root / vm_id[:16]


def handle_of(run_root: Path, vm_id: str, pid: int) -> VmHandle:
    run = runtime_dir(run_root, vm_id)
    return VmHandle(vm_id, pid, run, run / AGENT_SOCKET)


class Reconciler:
    """Adopts, kills and sweeps once, before the API serves."""

    def __init__(
        self,
        rows: VmRepository,
        nics: NicService,
        supervisor: Supervisor,
        adapter: VmmAdapter,
        run_root: Path,
        logs_dir: Path,
    ) -> None:
        self.rows = rows
        self.nics = nics
        self.supervisor = supervisor
        self.adapter = adapter
        self.run_root = run_root
        self.logs_dir = logs_dir

    async def run(self, on_exit: OnExit) -> tuple[list[VmRecord], list[str]]:
        """Returns the adopted VMs, and the ids of VMs to boot again (restart policy)."""
        found = self.adapter.discover(self.run_root)
        to_restart: list[str] = []
        for vm in self.rows.all():
            pid = found.pop(vm.id, None)
            if pid is None and vm.pid is not None:
                candidate = handle_of(self.run_root, vm.id, vm.pid)
                pid = vm.pid if self.adapter.is_alive(candidate) else None
            if pid is not None and vm.state in ACTIVE_STATES:
                self._adopt(vm, pid, on_exit)
            elif pid is not None:
                log.info("killing the hypervisor of VM %s: its row is %s", vm.name, vm.state)
                await self._kill(vm.id, pid)
                await self.nics.release_taps(vm.id)
            elif vm.state in ACTIVE_STATES:
                log.info("VM %s exited while hyprd was not running", vm.name)
                self.rows.update(
                    vm.id, state="exited", pid=None, finished_at=now_rfc3339(),
                    error=GONE_WHILE_DOWN,
                )  # fmt: skip
                await self.nics.release_taps(vm.id)
                if vm.spec.restart in RESTARTED_POLICIES:
                    to_restart.append(vm.id)
            else:
                await self.nics.release_taps(vm.id)
        for vm_id, pid in found.items():
            log.info("killing the hypervisor of unknown VM %s", vm_id[:12])
            await self._kill(vm_id, pid)
        live = {runtime_dir(self.run_root, vm_id) for vm_id in self.supervisor.running}
        await self.adapter.stop_orphans(self.run_root, live)
        await self.nics.sweep()
        self._sweep_files()
        adopted = [vm for vm in self.rows.all() if vm.id in self.supervisor.running]
        return adopted, to_restart

    def _adopt(self, vm: VmRecord, pid: int, on_exit: OnExit) -> None:
        log.info("adopting VM %s (pid %s)", vm.name, pid)
        if vm.pid != pid:
            self.rows.update(vm.id, pid=pid)
        running = RunningVm(handle_of(self.run_root, vm.id, pid))
        self.supervisor.watch(vm.id, running, on_exit)
        running.attach = asyncio.create_task(self.supervisor.attach_agent(vm.id, adopt=True))

    async def _kill(self, vm_id: str, pid: int) -> None:
        handle = handle_of(self.run_root, vm_id, pid)
        await self.adapter.kill(handle)
        await self.adapter.delete(handle)

    def _sweep_files(self) -> None:
        """Runtime dirs and console logs of VMs that no longer exist (rm was cut short)."""
        known = {vm.id for vm in self.rows.all()}
        short = {vm_id[:16] for vm_id in known}
        if self.run_root.is_dir():
            for entry in self.run_root.iterdir():
                if entry.name not in short:
                    shutil.rmtree(entry, ignore_errors=True)
        if self.logs_dir.is_dir():
            for entry in self.logs_dir.glob("*.log"):
                if len(entry.stem) == 64 and entry.stem not in known:
                    entry.unlink(missing_ok=True)
