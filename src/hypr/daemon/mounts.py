"""A VM's mounts on the host: what `create` claims and `rm` gives back, and what a boot hands
to the hypervisor (shared folders) and to the guest agent (where to mount them).

Named volumes are made on first use and anonymous ones per VM, as Docker does; a bind
source must exist and is pinned to its real path at create, so a symlink swapped later
cannot widen what the guest sees.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from hypr.daemon.volumes import VolumeService
from hypr.errors import Conflict, InvalidArgument, NotFound
from hypr.guest.spec import GuestMount
from hypr.state.vms import MountSpec
from hypr.vmm.adapter import SharedDir


def resolve_bind_source(source: str) -> str:
    """The real path of an existing directory or regular file."""
    try:
        real = os.path.realpath(source, strict=True)
    except OSError:
        raise InvalidArgument(f"bind source path does not exist: {source}") from None
    if not (os.path.isdir(real) or os.path.isfile(real)):
        raise InvalidArgument(f"bind source {source} is neither a directory nor a file")
    return real


class MountService:
    """Claims, releases and boots the mounts of VMs, over the volume service."""

    def __init__(self, volumes: VolumeService) -> None:
        self.volumes = volumes

    @contextlib.contextmanager
    def claim(self, mounts: list[MountSpec]) -> Iterator[list[MountSpec]]:
        """Yield `mounts` with every volume named and existing and every bind source
        resolved; the volumes this made are removed again if the caller's block fails."""
        made: list[str] = []
        try:
            yield [self._claim(mount, made) for mount in mounts]
        except BaseException:
            for name in made:
                with contextlib.suppress(Conflict, NotFound):
                    self.volumes.remove(name)
            raise

    def _claim(self, mount: MountSpec, made: list[str]) -> MountSpec:
        if mount.type == "bind":
            return replace(mount, source=resolve_bind_source(mount.source))
        if mount.type != "volume":
            return mount
        if mount.anonymous:
            volume = self.volumes.create(None, anonymous=True)
            made.append(volume.name)
            return replace(mount, source=volume.name)
        try:
            self.volumes.get(mount.source)
        except NotFound:
            made.append(self.volumes.ensure(mount.source).name)
        return mount

    def release(self, mounts: list[MountSpec]) -> None:
        """Remove a removed VM's anonymous volumes (kept while another VM mounts one)."""
        self.volumes.remove_anonymous(
            m.source for m in mounts if m.type == "volume" and m.anonymous
        )

    def for_boot(self, mounts: list[MountSpec]) -> tuple[list[SharedDir], list[GuestMount]]:
        """The shared folders to serve and the guest's mounts, in mount order."""
        shares: list[SharedDir] = []
        guest: list[GuestMount] = []
        for mount in mounts:
            if mount.type == "tmpfs":
                guest.append(
                    GuestMount(
                        mount.target,
                        read_only=mount.read_only,
                        tmpfs_size=mount.tmpfs_size,
                        tmpfs_mode=mount.tmpfs_mode,
                    )
                )
                continue
            if mount.type == "volume":
                source = Path(self.volumes.get(mount.source).mountpoint)
            else:
                source = Path(mount.source)
            if not source.exists():
                raise InvalidArgument(f"mount {mount.target}: {source} does not exist any more")
            name = str(len(shares))
            shares.append(SharedDir(name, source, mount.read_only))
            guest.append(GuestMount(mount.target, name, mount.read_only, mount.copy_up))
        return shares, guest
