"""Kernels and root filesystems given by path (Hyperfleet's `kernel_image_path` and
`rootfs_path`, or `hypr run /path/rootfs.ext4`): checked before a VM may use them.

A guest reads such a file as a block device, and QEMU as root opens any path, so a path
must lie under one of the directories the host allows (HYPR_MACHINE_ROOTS), after every
symlink is resolved, and be the kind of file it claims to be.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from hypr.errors import InvalidArgument

BootKind = Literal["kernel", "rootfs"]
SQUASHFS_MAGIC = b"hsqs"
EXT_MAGIC = b"\x53\xef"  # ext2/3/4 superblock magic, at 1024 + 56
ELF_MAGIC = b"\x7fELF"
BZIMAGE_MAGIC = b"HdrS"  # the x86 boot protocol header, at 0x202


def boot_file(text: str, roots: Sequence[Path], kind: BootKind, field: str) -> Path:
    """The resolved path of a kernel or root filesystem file; a relative `text` is taken
    from the first root. One clear line naming `field` if it cannot be used."""
    if not text or "\0" in text:
        raise InvalidArgument(f"{field}: a path is required")
    if not roots:
        raise InvalidArgument(f"{field}: this host allows no files (HYPR_MACHINE_ROOTS)")
    path = Path(text) if Path(text).is_absolute() else roots[0] / text
    resolved = path.resolve()
    allowed = [root.resolve() for root in roots]
    if not any(resolved.is_relative_to(root) for root in allowed):
        dirs = ", ".join(str(root) for root in allowed)
        raise InvalidArgument(f"{field}: {text} is outside the allowed directories ({dirs})")
    if not resolved.is_file():
        raise InvalidArgument(f"{field}: {text} does not exist (or is not a file)")
    if kind == "rootfs" and rootfs_type(resolved) is None:
        raise InvalidArgument(f"{field}: {text} is neither an ext4 nor a squashfs filesystem")
    if kind == "kernel" and not _is_kernel(resolved):
        raise InvalidArgument(f"{field}: {text} is not a Linux kernel (vmlinux or bzImage)")
    return resolved


def rootfs_type(path: Path) -> Literal["squashfs", "ext4"] | None:
    with path.open("rb") as f:
        head = f.read(1024 + 58)
    if head[:4] == SQUASHFS_MAGIC:
        return "squashfs"
    if head[1024 + 56 : 1024 + 58] == EXT_MAGIC:
        return "ext4"
    return None


def _is_kernel(path: Path) -> bool:
    with path.open("rb") as f:
        head = f.read(0x206)
    return head[:4] == ELF_MAGIC or head[0x202:0x206] == BZIMAGE_MAGIC
