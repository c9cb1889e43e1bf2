"""A minimal writer for the kernel's initramfs format (cpio "newc").

Pure Python so that the initramfs and the per-VM spec archive need neither root (for device
nodes) nor the `cpio` tool, and come out byte-for-byte reproducible (fixed inode numbers,
mtime 0).
"""

from __future__ import annotations

import stat
from collections.abc import Iterable
from dataclasses import dataclass

TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class CpioEntry:
    """One archive member; `data` is a file's contents or a symlink's target."""

    name: str  # relative path, no leading "/"
    mode: int  # full st_mode, type bits included
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)  # (major, minor) for device nodes

    @staticmethod
    def directory(name: str, perm: int = 0o755) -> CpioEntry:
        return CpioEntry(name, stat.S_IFDIR | perm)

    @staticmethod
    def file(name: str, data: bytes, perm: int = 0o644) -> CpioEntry:
        return CpioEntry(name, stat.S_IFREG | perm, data)

    @staticmethod
    def symlink(name: str, target: str) -> CpioEntry:
        return CpioEntry(name, stat.S_IFLNK | 0o777, target.encode())

    @staticmethod
    def chardev(name: str, major: int, minor: int, perm: int = 0o600) -> CpioEntry:
        return CpioEntry(name, stat.S_IFCHR | perm, rdev=(major, minor))


def _pad4(n: int) -> bytes:
    return b"\0" * (-n % 4)


def _member(ino: int, entry: CpioEntry | None) -> bytes:
    name = (entry.name if entry else TRAILER).encode() + b"\0"
    mode = entry.mode if entry else 0
    data = entry.data if entry else b""
    nlink = 2 if stat.S_ISDIR(mode) else 1
    rmaj, rmin = entry.rdev if entry else (0, 0)
    fields = (ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rmaj, rmin, len(name), 0)
    header = b"070701" + b"".join(b"%08X" % f for f in fields)
    head = header + name
    return head + _pad4(len(head)) + data + _pad4(len(data))


def newc_archive(entries: Iterable[CpioEntry], first_ino: int = 1) -> bytes:
    """Serialize `entries` (parents before children) followed by the TRAILER record.

    `first_ino` lets archives that get concatenated use distinct inode numbers.
    """
    out = bytearray()
    ino = first_ino
    for entry in entries:
        if entry.name.startswith("/") or not entry.name:
            raise ValueError(f"cpio member names must be relative: {entry.name!r}")
        out += _member(ino, entry)
        ino += 1
    out += _member(0, None)
    return bytes(out)
