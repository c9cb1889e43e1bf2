"""The daemon's volume service: create (named, anonymous, a stack's, or binding a host
directory), list, remove and prune volumes, with Docker's rule that a volume some VM
mounts (in any state: a stopped container still holds its volumes) cannot be removed.

Every method is synchronous and never awaits, so two requests never interleave; the
table's keys still decide a race (one name, one directory). A volume's row and directory
appear together: the directory is made inside the row's transaction and removed again if
that does not commit, and `reconcile` (at start, before VMs are adopted) mends what a
killed hyprd left: a row whose directory is gone gets an empty one, a directory no row
names is deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from hypr import faults
from hypr.config import Settings
from hypr.errors import Conflict, NotFound
from hypr.network.names import now_rfc3339
from hypr.state.db import Database
from hypr.state.vms import VmRecord
from hypr.state.volumes import VolumeRecord, VolumeRepository
from hypr.volumes.filters import parse_filters
from hypr.volumes.names import (
    ANONYMOUS_LABEL,
    check_stack_name,
    check_volume_name,
    new_anonymous_name,
)
from hypr.volumes.options import DRIVER, bound_device, check_driver
from hypr.volumes.store import VolumeStore

log = logging.getLogger(__name__)

CREATE_DIR = faults.register("volume.create.dir", "volume create: directory made, no row yet")
RM_ROW = faults.register("volume.rm.row", "volume rm: row removed, directory still there")


class VolumeService:
    """On the Daemon as `daemon.volumes`."""

    def __init__(
        self, settings: Settings, db: Database, vms: Callable[[], Iterable[VmRecord]]
    ) -> None:
        """`vms` lists every VM (any state): the volumes their specs mount are in use."""
        self.settings = settings
        self.db = db
        self.rows = VolumeRepository(db)
        self.store = VolumeStore(settings.volumes_dir)
        self._vms = vms

    # --- start-up ------------------------------------------------------------------------

    def reconcile(self) -> None:
        """Give every volume its directory and delete the directories of none (hypr's own
        only: a `device=` directory is the user's and never touched)."""
        volumes = self.rows.all()
        for vol in volumes:
            path = Path(vol.mountpoint)
            if path.is_dir():
                continue
            if vol.bound:
                log.warning("volume %s: its device directory %s is gone", vol.name, path)
            elif path.is_relative_to(self.store.root):
                log.warning("volume %s: its directory was gone; made it again, empty", vol.name)
                self.store.create(path)
            else:
                log.warning("volume %s: %s is missing (data directory moved?)", vol.name, path)
        keep = {Path(v.mountpoint) for v in volumes} | {
            self.store.path_for(v.name, v.stack) for v in volumes if not v.bound
        }
        for path in self.store.sweep(keep):
            log.info("deleted %s: no volume has it", path)

    # --- queries -------------------------------------------------------------------------

    def get(self, name: str) -> VolumeRecord:
        vol = self.rows.get(name)
        if vol is None:
            raise NotFound(f"no such volume: {name}")
        return vol

    def all(self) -> list[VolumeRecord]:
        return self.rows.all()

    def select(self, filters: Mapping[str, Sequence[str]]) -> list[VolumeRecord]:
        """`volume ls --filter`: the volumes that pass Docker's filters."""
        wanted = parse_filters(filters)
        used = self._used()
        return [vol for vol in self.rows.all() if wanted.matches(vol, vol.name in used)]

    def users(self, name: str) -> list[str]:
        """The names of the VMs that mount volume `name`."""
        return sorted(vm.name for vm in self._vms() if name in vm.spec.volume_names())

    # --- changing ------------------------------------------------------------------------

    def create(
        self,
        name: str | None,
        labels: Mapping[str, str] | None = None,
        options: Mapping[str, str] | None = None,
        stack: str | None = None,
        anonymous: bool = False,
        *,
        driver: str = DRIVER,
    ) -> VolumeRecord:
        """A new volume; no name makes an anonymous one (64 random hex digits), as Docker
        does. `name` is the whole name: a stack's volume is `<stack>_<key>` (compose's)."""
        check_driver(driver)
        anonymous = anonymous or name is None
        name = new_anonymous_name() if name is None else check_volume_name(name)
        if stack is not None:
            check_stack_name(stack)
        options = dict(options or {})
        device = bound_device(options, self.settings.data_dir)
        labels = dict(labels or {})
        if anonymous:
            labels.setdefault(ANONYMOUS_LABEL, "")
        vol = VolumeRecord(
            name=name,
            mountpoint=str(device or self.store.path_for(name, stack)),
            created=now_rfc3339(),
            driver=driver,
            labels=labels,
            options=options,
            stack=stack,
            anonymous=anonymous,
        )
        self._add(vol)
        log.info("created volume %s at %s", vol.name, vol.mountpoint)
        return vol

    def ensure(
        self,
        name: str,
        labels: Mapping[str, str] | None = None,
        options: Mapping[str, str] | None = None,
        stack: str | None = None,
    ) -> VolumeRecord:
        """The volume `name`, created first if there is none (`run -v name:/x`, compose);
        of two callers at once, both get the one volume."""
        existing = self.rows.get(check_volume_name(name))
        if existing is not None:
            return existing
        try:
            return self.create(name, labels, options, stack)
        except Conflict:
            existing = self.rows.get(name)
            if existing is None:  # the clash was its directory, not its name
                raise
            return existing

    def remove(self, name: str, force: bool = False) -> None:
        """Refused while a VM uses it, also with `force`, which (as Docker's -f) only
        makes a missing volume no error."""
        vol = self.rows.get(name)
        if vol is None:
            if force:
                return
            raise NotFound(f"no such volume: {name}")
        users = self.users(name)
        if users:
            vms = f"VM {users[0]}" if len(users) == 1 else f"VMs {', '.join(users)}"
            raise Conflict(f"volume {name} is in use by {vms}")
        self._delete(vol)

    def prune(self, all: bool = False) -> tuple[list[str], int]:
        """Remove the anonymous volumes no VM uses (Docker 23+); with `all`, every unused
        one. Returns the names removed and the bytes given back (a `device=` volume's files
        are the user's: they stay, and count nothing)."""
        used = self._used()
        removed: list[str] = []
        reclaimed = 0
        for vol in self.rows.all():
            if vol.name in used or not (all or vol.anonymous):
                continue
            reclaimed += 0 if vol.bound else self.store.size(Path(vol.mountpoint))
            self._delete(vol)
            removed.append(vol.name)
        return removed, reclaimed

    def remove_anonymous(self, names: Iterable[str]) -> list[str]:
        """Remove the anonymous ones among `names`, the volumes of a VM removed with `-v`
        or `--rm` (call it once the VM's row is gone); a named volume, or one another VM
        still mounts, stays. Returns the names removed."""
        removed = []
        for name in names:
            vol = self.rows.get(name)
            if vol is None or not vol.anonymous:
                continue
            users = self.users(name)
            if users:
                log.info("kept anonymous volume %s: VM %s uses it", name, users[0])
                continue
            self._delete(vol)
            removed.append(name)
        return removed

    # --- steps ---------------------------------------------------------------------------

    def _add(self, vol: VolumeRecord) -> None:
        """Write the row and make the directory in one transaction; whatever fails after
        the directory was made removes it again."""
        path = Path(vol.mountpoint)
        made = False
        try:
            with self.db.transaction():
                holder = self.rows.add(vol)
                if holder is not None and holder.name == vol.name:
                    raise Conflict(f"volume {vol.name} already exists")
                if holder is not None:
                    raise Conflict(
                        f"volume {vol.name} cannot be created: its directory {path} belongs "
                        f"to volume {holder.name}"
                    )
                if not vol.bound:
                    self.store.create(path)
                    made = True
                    faults.point(CREATE_DIR)
        except BaseException:
            if made:
                self.store.discard(path)
            raise

    def _delete(self, vol: VolumeRecord) -> None:
        """Row first: if hyprd dies before the directory goes, the next start sweeps it."""
        self.rows.remove(vol.name)
        faults.point(RM_ROW)
        if not vol.bound:
            self.store.discard(Path(vol.mountpoint))
        log.info("removed volume %s", vol.name)

    def _used(self) -> set[str]:
        return {name for vm in self._vms() for name in vm.spec.volume_names()}
