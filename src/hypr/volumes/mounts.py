"""The mount syntax of `run`: `-v`, `--mount` and `--tmpfs`, as Docker reads them, to the
`MountSpec`s a VM keeps. Pure code: the host paths are checked by the caller.

Docker's rules: `-v /target` is a new anonymous volume, `-v NAME:/target` a named one, and
`-v /host/path:/target` a bind mount (a source that starts with `/`); `ro`, `rw` and
`nocopy` are the options. Targets are absolute, never `/`, and unique within one VM.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable

from hypr.errors import InvalidArgument
from hypr.state.vms import MountSpec, MountType
from hypr.units import parse_size
from hypr.volumes.names import check_volume_name

# SELinux relabelling and propagation modes mean nothing for a VM's virtio-fs folders:
# `-v` and compose's short syntax accept them, as Docker does, and ignore them.
IGNORED_BIND_OPTIONS = frozenset(
    {"z", "Z", "private", "rprivate", "shared", "rshared", "slave", "rslave"}
)
_TMPFS_FLAGS = {"rw", "ro", "nosuid", "nodev", "noexec", "exec", "suid", "dev"}


def check_target(target: str) -> str:
    """An absolute guest path other than `/`, normalised (`/data/` is `/data`)."""
    if "\0" in target:
        raise InvalidArgument("a mount target must not contain NUL")
    if not target.startswith("/"):
        raise InvalidArgument(f"invalid mount target {target!r}: it must be an absolute path")
    normal = posixpath.normpath(target)
    if normal.startswith("//"):
        normal = "/" + normal.lstrip("/")
    if normal == "/":
        raise InvalidArgument("invalid mount target '/': the image's root cannot be replaced")
    if ".." in target.split("/"):
        raise InvalidArgument(f"invalid mount target {target!r}: '..' is not allowed")
    return normal


def check_bind_source(source: str) -> str:
    """A bind mount's host path as written: absolute, without `..` (the caller resolves
    symlinks when it checks that the path exists)."""
    if "\0" in source:
        raise InvalidArgument("a bind source must not contain NUL")
    if not source.startswith("/"):
        raise InvalidArgument(f"invalid bind source {source!r}: it must be an absolute path")
    if ".." in source.split("/"):
        raise InvalidArgument(f"invalid bind source {source!r}: '..' is not allowed")
    return posixpath.normpath(source)


def parse_volume_flag(text: str) -> MountSpec:
    """`-v [SOURCE:]TARGET[:OPTIONS]` (Docker's Binds)."""
    parts = text.split(":")
    if len(parts) > 3 or not all(parts[:2]) or not text:
        raise InvalidArgument(f"invalid volume specification {text!r}")
    if len(parts) == 1:
        return MountSpec("volume", "", check_target(parts[0]), copy_up=True, anonymous=True)
    source, target = parts[0], parts[1]
    options = parts[2].split(",") if len(parts) == 3 else []
    read_only = nocopy = False
    for option in options:
        if option in ("ro", "rw"):
            read_only = option == "ro"
        elif option == "nocopy":
            nocopy = True
        elif option not in IGNORED_BIND_OPTIONS:
            raise InvalidArgument(
                f"invalid volume specification {text!r}: unknown option {option!r}"
            )
    if source.startswith("/"):
        if nocopy:
            raise InvalidArgument(f"invalid volume specification {text!r}: nocopy is for volumes")
        return MountSpec("bind", check_bind_source(source), check_target(target), read_only)
    return MountSpec(
        "volume", check_volume_name(source), check_target(target), read_only, copy_up=not nocopy
    )


def mount_spec(
    type: MountType,
    source: str | None,
    target: str,
    read_only: bool = False,
    nocopy: bool = False,
    tmpfs_size: int | None = None,
    tmpfs_mode: int | None = None,
) -> MountSpec:
    """One `--mount` (Docker's HostConfig.Mounts entry), checked."""
    target = check_target(target)
    if type != "tmpfs" and (tmpfs_size is not None or tmpfs_mode is not None):
        raise InvalidArgument(f"mount {target}: tmpfs options are for type=tmpfs")
    if type != "volume" and nocopy:
        raise InvalidArgument(f"mount {target}: volume-nocopy is for type=volume")
    if type == "bind":
        if not source:
            raise InvalidArgument(f"mount {target}: a bind mount needs a source")
        return MountSpec("bind", check_bind_source(source), target, read_only)
    if type == "tmpfs":
        if source:
            raise InvalidArgument(f"mount {target}: a tmpfs has no source")
        return _tmpfs(
            target, read_only, tmpfs_size or 0, 0o1777 if tmpfs_mode is None else tmpfs_mode
        )
    if not source:
        return MountSpec("volume", "", target, read_only, copy_up=not nocopy, anonymous=True)
    return MountSpec("volume", check_volume_name(source), target, read_only, copy_up=not nocopy)


def parse_tmpfs(target: str, options: str) -> MountSpec:
    """`--tmpfs TARGET[:OPTIONS]` (Docker's HostConfig.Tmpfs): size, mode, ro|rw."""
    size, mode, read_only = 0, 0o1777, False
    for option in filter(None, options.split(",")):
        key, _, value = option.partition("=")
        if key == "size" and value:
            size = parse_size(value)
        elif key == "mode" and value:
            try:
                mode = int(value, 8)
            except ValueError:
                raise InvalidArgument(f"tmpfs {target}: invalid mode {value!r}") from None
        elif option in _TMPFS_FLAGS:
            read_only = option == "ro" or (read_only and option != "rw")
        else:
            raise InvalidArgument(f"tmpfs {target}: unknown option {option!r}")
    return _tmpfs(check_target(target), read_only, size, mode)


def _tmpfs(target: str, read_only: bool, size: int, mode: int) -> MountSpec:
    if size < 0:
        raise InvalidArgument(f"tmpfs {target}: the size must not be negative")
    if not 0 <= mode <= 0o7777:
        raise InvalidArgument(f"tmpfs {target}: invalid mode {mode:o}")
    return MountSpec("tmpfs", "", target, read_only, tmpfs_size=size, tmpfs_mode=mode)


def check_unique_targets(mounts: Iterable[MountSpec]) -> None:
    """Two mounts on one target: Docker's "Duplicate mount point"."""
    seen: set[str] = set()
    for mount in mounts:
        if mount.target in seen:
            raise InvalidArgument(f"duplicate mount point: {mount.target}")
        seen.add(mount.target)


def mount_order(mounts: Iterable[MountSpec]) -> list[MountSpec]:
    """Parents before children (`/data` before `/data/cache`), as Docker sorts them."""
    return sorted(mounts, key=lambda m: m.target.count("/"))
