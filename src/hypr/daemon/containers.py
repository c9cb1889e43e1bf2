"""Docker's container verbs that hypr's own API has no word for, composed from the VM
manager: create without a start, kill with a signal, rename, restart, the wait conditions,
top, prune, exec instances, and network connect and disconnect."""

from __future__ import annotations

import logging
import shlex
import signal
from collections.abc import Callable

from hypr.daemon.execs import ExecConfig, ExecInstance, ExecRegistry
from hypr.daemon.exits import Exit
from hypr.daemon.reconcile import ACTIVE_STATES
from hypr.daemon.requests import NetworkAttachment, RunRequest
from hypr.daemon.vms import VmManager
from hypr.errors import Conflict, HyprError, InvalidArgument
from hypr.guest.wire import AgentDisconnected, TtySize
from hypr.network.manager import NetworkManager
from hypr.network.names import check_vm_name
from hypr.state.vms import VmRecord

log = logging.getLogger(__name__)

WAIT_CONDITIONS = ("not-running", "next-exit", "removed")
AGENT_PID = "1"  # kestrel, PID 1 of every guest: not one of the workload's processes


class ContainerService:
    """What Docker does to containers beyond run, stop and remove."""

    def __init__(self, vms: VmManager, networks: NetworkManager, execs: ExecRegistry) -> None:
        self.vms = vms
        self.networks = networks
        self.execs = execs

    def named(self, name: str) -> VmRecord | None:
        """The VM that has this exact name (Docker's conflict names it)."""
        vm = self.vms.rows.find(name)  # an exact name first, else an id (prefix)
        return vm if vm is not None and vm.name == name else None

    def create(self, req: RunRequest) -> VmRecord:
        """Docker's create: the image must be here already (on a 404 the client pulls it
        and asks again), and nothing starts."""
        return self.vms.create(req.model_copy(update={"start": False, "pull": "never"}))

    async def kill(self, ref: str, signum: int) -> None:
        """SIGKILL powers the VM off at once: its workload dies with it (137) and is not
        restarted, as Docker's kill. Any other signal goes to the workload's process group,
        and a workload that it ends exits as any other (its restart policy applies)."""
        if signum == signal.SIGKILL:
            vm = self.vms.get(ref)
            if vm.state not in ACTIVE_STATES:
                raise Conflict(f"VM {vm.name} is not running")
            await self.vms.stop(vm.id, grace=0)
            return
        try:
            await self.vms.agent(ref).signal_workload(signum)
        except AgentDisconnected as exc:
            raise Conflict(f"VM {ref} is not running: {exc}") from None

    async def restart(self, ref: str, grace: float) -> VmRecord:
        """Stop (if running), then start: one boot of the VM after the other."""
        await self.vms.stop(ref, grace)
        return await self.vms.start(ref)

    async def wait_for(self, ref: str, condition: str) -> Exit:
        """`not-running` answers at once for a VM that is not running; `next-exit` waits for
        the next exit even of a VM not started yet (`docker run -d` asks before it starts
        it); `removed` waits until the VM is gone."""
        if condition not in WAIT_CONDITIONS:
            raise InvalidArgument(
                f"invalid wait condition {condition!r}: use {', '.join(WAIT_CONDITIONS)}"
            )
        vm = self.vms.get(ref)
        if condition == "not-running" and vm.state not in ACTIVE_STATES:
            return Exit(vm.exit_code, vm.error)
        return await self.vms.exits.wait(vm.id, "removed" if condition == "removed" else "exit")

    async def rename(self, ref: str, name: str) -> VmRecord:
        """Another name, also in DNS at once for a running VM. The guest keeps its host name
        until it boots again, as a renamed container keeps its own."""
        vm = self.vms.get(ref)
        check_vm_name(name)
        rows = self.vms.rows
        with self.vms.db.transaction():
            if rows.name_taken(name):
                raise Conflict(f"the name {name} is already in use by another VM")
            other = rows.name_in_other_case(name, vm.id)
            if other is not None:
                raise Conflict(f"the name {name} is in use by VM {other} (DNS ignores case)")
            rows.rename(vm.id, name)
        renamed = self.vms.get(vm.id)
        for observer in self.vms.observers:
            await observer.vm_renamed(vm, renamed)
        log.info("renamed VM %s to %s", vm.name, name)
        return renamed

    async def top(self, ref: str, ps_args: str) -> tuple[list[str], list[list[str]]]:
        """`ps` run in the guest through the agent, as Docker runs it on the host: the
        titles and the rows, without the agent itself, kernel threads and this ps."""
        vm = self.vms.get(ref)
        try:
            argv = ["ps", *shlex.split(ps_args)]
        except ValueError as exc:
            raise InvalidArgument(f"invalid ps_args {ps_args!r}: {exc}") from None
        try:
            result = await self.vms.exec(vm.id, argv, [], None, b"")
        except AgentDisconnected as exc:
            raise Conflict(f"VM {vm.name} is not running: {exc}") from None
        errors = result.stderr.decode(errors="replace").strip()
        if result.exit_code == 127:
            raise Conflict(f"VM {vm.name} cannot list its processes: its image has no ps")
        if result.exit_code != 0:
            reason = errors.splitlines()[0] if errors else f"exit code {result.exit_code}"
            raise HyprError(f"ps {ps_args} failed in VM {vm.name}: {reason}")
        lines = result.stdout.decode(errors="replace").splitlines()
        if not lines:
            return [], []
        titles = lines[0].split()
        rows = [line.split(None, len(titles) - 1) for line in lines[1:] if line.strip()]
        return titles, [row for row in rows if _workload_process(titles, row, argv)]

    async def prune(self, wanted: Callable[[VmRecord], bool]) -> list[str]:
        """Remove the VMs that are not running and that `wanted` selects; their ids."""
        removed = []
        for vm in self.vms.all():
            if vm.state in ACTIVE_STATES or not wanted(vm):
                continue
            try:
                await self.vms.remove(vm.id)
            except HyprError as exc:  # started meanwhile, or removed by someone else
                log.info("prune: kept VM %s: %s", vm.name, exc.message)
                continue
            removed.append(vm.id)
        return removed

    def exec_create(self, ref: str, config: ExecConfig, size: TtySize | None) -> ExecInstance:
        """An exec instance in a running VM; its agent session begins at `exec_start`."""
        vm = self.vms.get(ref)
        if vm.id not in self.vms.running or vm.state != "running":
            raise Conflict(f"container {vm.name} is not running")
        return self.execs.create(vm.id, config, size)

    async def exec_start(self, exec_id: str, detach: bool) -> ExecInstance:
        """Start the exec's agent session; its output is the caller's to read unless
        `detach`."""
        agent = self.vms.agent(self.execs.get(exec_id).vm_id)
        return await self.execs.start(exec_id, agent, detach)

    async def connect(self, net_ref: str, vm_ref: str, attach: NetworkAttachment) -> None:
        """Docker's `network connect` of a VM that is not running (see VmManager)."""
        net = self.networks.get(net_ref)
        attach = attach.model_copy(update={"network": net.id})
        await self.vms.change_attachments(vm_ref, lambda vm: self.vms.nics.connect(vm, attach))

    async def disconnect(self, net_ref: str, vm_ref: str) -> None:
        net = self.networks.get(net_ref)
        await self.vms.change_attachments(vm_ref, lambda vm: self.vms.nics.disconnect(vm, net.id))


def _workload_process(titles: list[str], row: list[str], argv: list[str]) -> bool:
    """Not the agent (PID 1), not a kernel thread (`[kthreadd]`), not the ps that lists."""
    command = row[-1] if len(row) == len(titles) else ""
    pid = row[titles.index("PID")] if "PID" in titles and len(row) == len(titles) else ""
    kernel_thread = command.startswith("[") and command.endswith("]")
    return pid != AGENT_PID and not kernel_thread and command != " ".join(argv)
