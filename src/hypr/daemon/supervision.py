"""Supervision of running VMs: the agent connection, a watcher per hypervisor process, and
the truthful reason a VM stopped.

A watcher notices the hypervisor's exit (of VMs booted by this daemon and of VMs adopted
after a restart alike) and hands the VM, with its exit code and reason, to the manager's
`on_exit`, which releases what the VM held and decides about a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from hypr.guest.protocol import AgentClient
from hypr.guest.wire import WorkloadExit
from hypr.state.vms import VmRepository
from hypr.vmm.adapter import VmHandle, VmmAdapter

log = logging.getLogger(__name__)

BOOT_TIMEOUT = 120.0  # TCG on a loaded 2-core machine is slow; KVM boots in well under 1 s
AGENT_CONNECT_TIMEOUT = 15.0
KILLED_EXIT_CODE = 137  # 128 + SIGKILL, what Docker reports for a killed container
NOT_READY = "the hypervisor exited before the guest agent was ready"
UNEXPECTED = "the hypervisor exited unexpectedly"


@dataclass
class RunningVm:
    """What the daemon holds for a VM whose hypervisor process is alive."""

    handle: VmHandle
    agent: AgentClient | None = None
    final_exit: WorkloadExit | None = None
    stopping: bool = False
    sleeping: bool = False  # stopped after its state was saved: it wakes from there
    ready: bool = False  # the agent reported ready at least once
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    exit_code: int | None = None  # set by the watcher before `exited`
    watcher: asyncio.Task[None] | None = None
    attach: asyncio.Task[None] | None = None


OnExit = Callable[[str, RunningVm, int | None, str | None], Awaitable[None]]


class Supervisor:
    """Holds the running VMs, connects to their agents and watches their hypervisors."""

    def __init__(self, rows: VmRepository, adapter: VmmAdapter, logs_dir: Path) -> None:
        self.rows = rows
        self.adapter = adapter
        self.logs_dir = logs_dir
        self.running: dict[str, RunningVm] = {}

    def watch(self, vm_id: str, running: RunningVm, on_exit: OnExit) -> None:
        self.running[vm_id] = running
        running.watcher = asyncio.create_task(self._supervise(vm_id, running, on_exit))

    async def attach_agent(self, vm_id: str, adopt: bool) -> None:
        """Connect to the guest agent and wait until it reports ready."""
        running = self.running.get(vm_id)
        if running is None:
            return

        def on_workload_exit(event: WorkloadExit) -> None:
            running.final_exit = event
            self.rows.update(vm_id, restarts=event.restarts)

        try:
            async with asyncio.timeout(AGENT_CONNECT_TIMEOUT):
                agent = await AgentClient.connect(
                    running.handle.agent_socket, on_workload_exit=on_workload_exit
                )
            running.agent = agent
            async with asyncio.timeout(BOOT_TIMEOUT):
                state = await agent.wait_ready()
        except (TimeoutError, ConnectionError, OSError) as exc:
            if adopt:
                log.warning(
                    "cannot reach the agent of adopted VM %s: %s",
                    vm_id[:12],
                    str(exc) or "timed out",
                )
                return
            raise
        running.ready = True  # before any other await: a quick workload's exit may follow
        if vm_id in self.running and not running.stopping:
            self.rows.update(vm_id, state="running", restarts=state.restarts)
        # Last: a workload that is done already may have taken the agent down with it, and
        # the clock only matters to a guest that goes on (a restored one, above all).
        with contextlib.suppress(ConnectionError):
            await agent.set_clock()

    async def shutdown(self) -> None:
        """Daemon exit: hang up on agents; the VMs keep running and are adopted later."""
        for running in self.running.values():
            if running.watcher is not None:
                running.watcher.cancel()
            if running.agent is not None:
                await running.agent.close()

    async def _supervise(self, vm_id: str, running: RunningVm, on_exit: OnExit) -> None:
        try:
            await self.adapter.wait(running.handle)
        except asyncio.CancelledError:
            return  # daemon shutdown: the VM lives on and is adopted at the next start
        exit_code, error = self._exit_status(running)
        if running.agent is not None:
            await running.agent.close()
        with contextlib.suppress(OSError):
            await self.adapter.delete(running.handle)
        self.running.pop(vm_id, None)
        try:
            await on_exit(vm_id, running, exit_code, error)
        finally:
            running.exit_code = exit_code
            running.exited.set()

    def _exit_status(self, running: RunningVm) -> tuple[int | None, str | None]:
        """(exit code, error): the workload's code when the guest reported one, else how
        the hypervisor died, as truthfully as the daemon can tell."""
        status = self.adapter.exit_status(running.handle)
        if running.final_exit is not None:
            return running.final_exit.exit_code, None
        if running.stopping:
            return KILLED_EXIT_CODE, None  # killed before the agent could report
        agent_state = running.agent.state if running.agent else None
        if agent_state is not None and agent_state.exit_code is not None:
            return agent_state.exit_code, None
        if status is not None and status < 0:
            sig = -status
            return 128 + sig, f"the hypervisor was killed by signal {sig} ({_signame(sig)})"
        return None, self._failure_reason(running)

    def _failure_reason(self, running: RunningVm) -> str:
        """The most telling line of what QEMU and the guest printed before dying."""
        handle = running.handle
        candidates: list[str] = []
        for path in (handle.runtime_dir / "qemu.stderr", self.logs_dir / f"{handle.vm_id}.log"):
            with contextlib.suppress(OSError):
                candidates += path.read_text(errors="replace").strip().splitlines()[-20:]
        for line in reversed(candidates):
            lowered = line.lower()
            if any(word in lowered for word in ("panic", "qemu", "error", "kestrel:")):
                return line.strip()[:300]
        return UNEXPECTED if running.ready else NOT_READY


def _signame(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"
