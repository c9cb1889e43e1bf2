"""Idle VMs sleep and wake (`--idle-timeout`): a VM that nobody used for that long is saved
and stopped (state `sleeping`), and the next use restores it and is answered.

Use is what reaches the VM: a connection to it (conntrack: an entry whose reply comes from
one of its addresses, which is how published ports, the SSH pool, the reverse proxy and its
neighbours reach it; a new entry since the last look, or one still open) and an exec
session. A sleeping VM's TCP ports (published and SSH) are held by listeners of hyprd:
the first connection to any of them is accepted and held, the VM restored, and the
connection spliced to it; the reverse proxy and exec wake it through `wake`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from ipaddress import IPv4Address

from pyroute2 import Conntrack

from hypr.daemon.ports import PortForwarder
from hypr.daemon.snapshots import IDLE_PREFIX, SnapshotService
from hypr.daemon.vms import VmManager
from hypr.errors import HyprError
from hypr.splice import splice
from hypr.state.ports import PortForward
from hypr.state.vms import VmRecord

log = logging.getLogger(__name__)
CHECK_EVERY = 1.0  # seconds between looks at the VMs with an idle timeout
_OPEN_TCP_STATES = range(0, 7)  # conntrack's TCP states before TIME_WAIT (7) and CLOSE (8)


class IdleService:
    """On the Daemon as `daemon.idle`."""

    def __init__(self, vms: VmManager, snapshots: SnapshotService, ports: PortForwarder) -> None:
        self.vms = vms
        self.snapshots = snapshots
        self.ports = ports
        self._last_use: dict[str, float] = {}
        self._seen: dict[str, set[int]] = {}  # conntrack entry ids seen per VM
        self._listeners: dict[str, list[asyncio.Server]] = {}
        self._waking: dict[str, asyncio.Task[VmRecord]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen for the sleeping VMs (a restarted hyprd), then watch the others."""
        for vm in self.vms.all():
            if vm.state == "sleeping":
                await self._listen(vm)
        self._task = asyncio.create_task(self._watch())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for vm_id in list(self._listeners):
            await self._stop_listening(vm_id)

    def used(self, vm_id: str) -> None:
        """An exec session, a proxied request: the VM is in use now."""
        self._last_use[vm_id] = time.monotonic()

    async def wake(self, ref: str) -> VmRecord:
        """Restore a sleeping VM (several callers at once wait for one restore); a VM that
        is not sleeping is returned as it is."""
        vm = self.vms.get(ref)
        if vm.state != "sleeping":
            return vm
        task = self._waking.get(vm.id)
        if task is None:
            task = asyncio.create_task(self._restore(vm))
            self._waking[vm.id] = task
            task.add_done_callback(lambda _: self._waking.pop(vm.id, None))
        return await asyncio.shield(task)

    async def forget(self, vm_id: str) -> None:
        """A sleeping VM was stopped or removed: its listeners and saved state go."""
        await self._stop_listening(vm_id)
        with contextlib.suppress(HyprError):
            self.snapshots.remove_sleep(vm_id)
        self._last_use.pop(vm_id, None)
        self._seen.pop(vm_id, None)

    # --- sleeping ------------------------------------------------------------------------

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(CHECK_EVERY)
            watched = [vm for vm in self.vms.all()
                       if vm.state == "running" and vm.spec.idle_timeout]  # fmt: skip
            if not watched:
                continue
            try:
                entries = await asyncio.to_thread(_connections)
            except OSError as exc:
                log.warning("idle: cannot read conntrack: %s", exc)
                continue
            now = time.monotonic()
            for vm in watched:
                self._last_use.setdefault(vm.id, now)
                if self._in_use(vm, entries):
                    self._last_use[vm.id] = now
                elif now - self._last_use[vm.id] >= (vm.spec.idle_timeout or 0):
                    await self._sleep(vm)

    def _in_use(self, vm: VmRecord, entries: list[tuple[int, IPv4Address, int]]) -> bool:
        addresses = {nic.address for nic in vm.nics if nic.address is not None}
        mine = {(ct_id, state) for ct_id, address, state in entries if address in addresses}
        ids = {ct_id for ct_id, _ in mine}
        new = ids - self._seen.get(vm.id, set())
        self._seen[vm.id] = ids
        return bool(new) or any(state in _OPEN_TCP_STATES for _, state in mine)

    async def _sleep(self, vm: VmRecord) -> None:
        try:
            await self.snapshots.create(vm.id, IDLE_PREFIX + vm.id, sleep=True)
        except HyprError as exc:
            log.warning("idle: VM %s cannot sleep: %s", vm.name, exc.message)
            self._last_use[vm.id] = time.monotonic()  # try again after another timeout
            return
        log.info("idle: VM %s sleeps after %ss without use", vm.name, vm.spec.idle_timeout)
        sleeping = self.vms.rows.get(vm.id)
        if sleeping is not None:
            await self._listen(sleeping)

    # --- waking --------------------------------------------------------------------------

    async def _restore(self, vm: VmRecord) -> VmRecord:
        await self._stop_listening(vm.id)  # the VM's own forwards take the ports back
        snapshot = self.snapshots.get(IDLE_PREFIX + vm.id)
        began = time.monotonic()
        try:
            woken = await self.snapshots.restore(snapshot.name, vm.id)
        except BaseException:
            await self._listen(vm)
            raise
        self.snapshots.remove_sleep(vm.id)
        self._last_use[vm.id] = time.monotonic()
        log.info("idle: VM %s woke in %.2fs", vm.name, time.monotonic() - began)
        return woken

    async def _listen(self, vm: VmRecord) -> None:
        """Hold the sleeping VM's TCP ports: the first connection wakes it."""
        target = self.ports.target(vm)
        servers = []
        for fwd in self.ports.forwards(vm.id):
            if fwd.protocol != "tcp" or target is None:
                continue
            try:
                servers.append(await asyncio.start_server(
                    self._handler(vm.id, target, fwd), str(fwd.host_ip), fwd.host_port,
                    reuse_address=True,
                ))  # fmt: skip
            except OSError as exc:
                log.warning("idle: VM %s: cannot hold %s: %s", vm.name, fwd.host, exc)
        self._listeners[vm.id] = servers

    def _handler(
        self, vm_id: str, target: IPv4Address, fwd: PortForward
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await self.wake(vm_id)
                upstream_reader, upstream = await _connect(target, fwd.guest_port)
            except (HyprError, OSError, TimeoutError) as exc:
                log.warning("idle: cannot wake VM %s for %s: %s", vm_id[:12], fwd.host, exc)
                writer.close()
                return
            await splice(reader, writer, upstream_reader, upstream)

        return handle

    async def _stop_listening(self, vm_id: str) -> None:
        for server in self._listeners.pop(vm_id, []):
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()


def _connections() -> list[tuple[int, IPv4Address, int]]:
    """(id, address that answers, TCP state or -1) of every conntrack entry."""
    found = []
    with Conntrack() as ct:
        for entry in ct.dump_entries():
            state = entry.protoinfo.state if entry.protoinfo is not None else -1
            with contextlib.suppress(ValueError):
                found.append((entry.id, IPv4Address(entry.tuple_reply.saddr), state))
    return found


async def _connect(
    address: IPv4Address, port: int, patience: float = 30.0
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """The restored guest's server may need a moment: retry until it accepts."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return await asyncio.open_connection(str(address), port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
