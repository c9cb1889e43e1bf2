"""A stack's volumes, for `up` and `down -v`: which ones are the stack's, making the missing
ones, removing them again, and a service's mounts as its VM's request takes them.

A volume is the stack's when it carries the stack's project label, which only the volumes
made for the stack have: an external volume, or one made otherwise, is used but never
removed. They live in the VMs' own volume service, so `hypr volume` sees them too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from hypr.compose.project import PROJECT_LABEL
from hypr.compose.volumes import MountPlan, VolumePlan
from hypr.daemon.requests import MountRequest
from hypr.daemon.volumes import VolumeService
from hypr.errors import Conflict, HyprError, InvalidArgument, NotFound


class StackVolumes:
    """The volume steps of StackManager's `up` and `down`; each reports through `emit`."""

    def __init__(self, volumes: VolumeService) -> None:
        self.volumes = volumes

    def owned(self, project: str) -> list[str]:
        """The volumes labelled as the stack's: those its `up` made (never an external
        one, which carries no label of it), which `down -v` removes."""
        return [v.name for v in self.volumes.all() if v.labels.get(PROJECT_LABEL) == project]

    def precheck(self, plans: list[VolumePlan]) -> None:
        """Refuse an `up` whose external volumes are missing, before anything is made."""
        for plan in plans:
            if plan.external:
                try:
                    self.volumes.get(plan.name)
                except NotFound:
                    raise InvalidArgument(f"external volume {plan.name} not found") from None

    def ensure(
        self, plan: VolumePlan, project: str, emit: Callable[[dict[str, Any]], None]
    ) -> bool:
        """Make a stack's volume unless it exists (an existing one is used as it is, as
        compose does, with a warning if it is not this stack's); True if it was made."""
        if plan.external:
            return False
        try:
            existing = self.volumes.get(plan.name)
        except NotFound:
            self.volumes.create(plan.name, plan.labels, plan.options, stack=project)
            emit({"volume": plan.name, "status": "Created"})
            return True
        owner = existing.labels.get(PROJECT_LABEL)
        if owner != project:
            made = f"was made for stack {owner}" if owner else "was not made by compose"
            emit(
                {
                    "warning": f"volume {plan.name} already exists and {made}; "
                    "use external: true to use an existing volume"
                }
            )
        return False

    def rollback(self, names: list[str], emit: Callable[[dict[str, Any]], None]) -> None:
        """Remove the volumes a failed `up` made, newest first (they are new, so only that
        attempt wrote to them); what cannot be removed is left."""
        for name in reversed(names):
            with contextlib.suppress(HyprError):
                self.volumes.remove(name)
                emit({"volume": name, "status": "Removed"})

    def remove(self, names: list[str], emit: Callable[[dict[str, Any]], None]) -> None:
        """`down -v`: remove the stack's volumes; one that a VM kept by `down` (an orphan)
        still mounts is kept, with a warning."""
        for name in names:
            try:
                self.volumes.remove(name)
            except Conflict as exc:
                emit({"warning": f"{exc.message}; kept"})
                continue
            emit({"volume": name, "status": "Removed"})


def mount_requests(mounts: list[MountPlan]) -> list[MountRequest]:
    """A service's planned mounts as `run` takes them (the same checks apply again)."""
    return [
        MountRequest(
            type=m.type,
            source=m.source,
            target=m.target,
            read_only=m.read_only,
            nocopy=m.nocopy,
            tmpfs_size=m.tmpfs_size,
            tmpfs_mode=m.tmpfs_mode,
        )
        for m in mounts
    ]
