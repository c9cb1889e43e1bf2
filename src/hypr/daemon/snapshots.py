"""Snapshots: a running VM's whole state (RAM, devices, what its processes had open) saved
by QEMU to a file, and the VM resumed from it later, also under TCG.

A snapshot lives in `$HYPR_DATA_DIR/snapshots/<name>/`: `state` (QEMU's migration stream)
and `meta.json` (its VM, when, and the devices it was saved with). A restore boots the VM's
own QEMU with `-incoming`: the VM keeps its MAC, addresses, DNS names and published ports
(they are the VM's, not the snapshot's), and its agent is connected again and given the
host's clock. The devices must be the ones saved: a VM whose NICs changed since (a network
removed under it) cannot take the snapshot back. Sleeping VMs (idle management) are saved
the same way, as a snapshot named `.idle-<vm id>` that `ls` does not show.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from hypr.daemon.reconcile import ACTIVE_STATES
from hypr.daemon.vms import VmManager
from hypr.errors import Conflict, InvalidArgument, NotFound
from hypr.network.names import now_rfc3339
from hypr.state.vms import VmRecord

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
IDLE_PREFIX = ".idle-"


@dataclass(frozen=True)
class Snapshot:
    name: str
    vm_id: str
    vm_name: str
    created: str
    size: int
    macs: list[str]  # the NICs it was saved with, in order

    @property
    def hidden(self) -> bool:
        return self.name.startswith(IDLE_PREFIX)


class SnapshotService:
    """On the Daemon as `daemon.snapshots`."""

    def __init__(self, vms: VmManager, root: Path) -> None:
        self.vms = vms
        self.root = root
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for partial in root.glob("*/state.partial"):  # a save cut short by a kill
            shutil.rmtree(partial.parent, ignore_errors=True)

    def all(self, hidden: bool = False) -> list[Snapshot]:
        found = [s for s in map(self._read, sorted(self.root.iterdir())) if s is not None]
        return [s for s in found if hidden or not s.hidden]

    def get(self, name: str) -> Snapshot:
        snapshot = self._read(self.root / name) if _NAME.match(name.lstrip(".")) else None
        if snapshot is None:
            raise NotFound(f"no such snapshot: {name}")
        return snapshot

    def state_file(self, snapshot: Snapshot) -> Path:
        return self.root / snapshot.name / "state"

    async def create(self, ref: str, name: str | None = None, sleep: bool = False) -> Snapshot:
        """Save a running VM's state as `name` (default `<vm>-<UTC time>`); it goes on
        running, or with `sleep` (idle management) it stops there."""
        vm = self.vms.get(ref)
        if vm.state != "running":
            raise Conflict(f"VM {vm.name} is {vm.state}: only a running VM can be snapshotted")
        if any(m.type != "tmpfs" for m in vm.spec.mounts):
            raise Conflict(
                f"VM {vm.name} has volumes or bind mounts: their virtio-fs device cannot be "
                "saved by QEMU, so such a VM has no snapshots"
            )
        if name is None:
            name = f"{vm.name}-{datetime.now(UTC).strftime('%Y%m%d%H%M%S')}"
        if not _NAME.match(name.lstrip(".")):
            raise InvalidArgument(f"invalid snapshot name {name!r}: letters, digits, _ . -")
        directory = self.root / name
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            raise Conflict(f"a snapshot named {name} exists already") from None
        partial = directory / "state.partial"
        try:
            size = await self.vms.save_state(vm.id, partial, sleep=sleep)
            snapshot = Snapshot(name, vm.id, vm.name, now_rfc3339(), size,
                                [nic.mac for nic in vm.nics])  # fmt: skip
            (directory / "meta.json").write_text(json.dumps(asdict(snapshot)))
            partial.replace(directory / "state")
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        return snapshot

    def remove(self, name: str) -> Snapshot:
        snapshot = self.get(name)
        vm = self.vms.rows.get(snapshot.vm_id)
        if snapshot.hidden and vm is not None and vm.state == "sleeping":
            raise Conflict(f"VM {vm.name} sleeps in this snapshot: start or remove the VM")
        shutil.rmtree(self.root / name, ignore_errors=True)
        return snapshot

    def remove_sleep(self, vm_id: str) -> None:
        """The state a sleeping VM woke from, or that a stopped one no longer needs."""
        shutil.rmtree(self.root / (IDLE_PREFIX + vm_id), ignore_errors=True)

    def remove_of(self, vm_id: str) -> None:
        """A removed VM's snapshots go with it (they cannot be restored anywhere else)."""
        for snapshot in self.all(hidden=True):
            if snapshot.vm_id == vm_id:
                shutil.rmtree(self.root / snapshot.name, ignore_errors=True)

    async def restore(self, name: str, ref: str) -> VmRecord:
        """`hypr start --snapshot NAME VM`: the VM resumes where the snapshot saved it."""
        snapshot = self.get(name)
        vm = self.vms.get(ref)
        self.check_restorable(snapshot, vm)
        return await self.vms.start(vm.id, incoming=self.state_file(snapshot))

    def check_restorable(self, snapshot: Snapshot, vm: VmRecord) -> None:
        if snapshot.vm_id != vm.id:
            raise Conflict(
                f"snapshot {snapshot.name} is of VM {snapshot.vm_name}, not of {vm.name}: a "
                "snapshot can only be restored onto its own VM"
            )
        if vm.state in ACTIVE_STATES:
            raise Conflict(f"VM {vm.name} is running: stop it before restoring a snapshot")
        if [nic.mac for nic in vm.nics] != snapshot.macs:
            raise Conflict(
                f"VM {vm.name}'s networks changed since snapshot {snapshot.name} (a network "
                "it was on has gone, or it was connected or disconnected): its saved NICs "
                "cannot be restored"
            )

    def _read(self, directory: Path) -> Snapshot | None:
        try:
            data = json.loads((directory / "meta.json").read_text())
            if not (directory / "state").is_file():
                return None
            return Snapshot(**data)
        except (OSError, ValueError, TypeError):
            return None
