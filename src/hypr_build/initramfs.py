"""The shared initramfs: /init (kestrel), busybox for DHCP, and the kernel modules."""

from __future__ import annotations

import gzip
from pathlib import Path

from hypr.guest.assets import INITRAMFS, SHARES_INITRAMFS
from hypr.guest.cpio import CpioEntry, newc_archive
from hypr_build.common import Stamps, digest, file_digest, step
from hypr_build.kernel import LOAD_ORDER, SHARED_FOLDER_ORDER

BUSYBOX = Path("/bin/busybox")
# Busybox applets the initramfs needs besides the agent (DHCP only).
INITRAMFS_APPLETS = ("sh", "udhcpc", "ip")
# Measured under TCG: the kernel unpacks the plain 3 MB archive in ~60 ms, the 1.3 MB gzip
# one in ~130 ms (inflate is emulated CPU work, loading the file is not), so: uncompressed.
COMPRESS_INITRAMFS = False

UDHCPC_SCRIPT = """#!/bin/sh
# Applies udhcpc leases for kestrel, hypr's guest agent.
case "$1" in
deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
bound|renew)
    if [ "$1" = bound ]; then ip -4 addr flush dev "$interface"; fi
    ip addr add "$ip/${mask:-24}" dev "$interface" 2>/dev/null
    # The first NIC with a gateway keeps the default route.
    if [ -n "$router" ] && [ -z "$(ip -4 route show default)" ]; then
        ip route add default via "${router%% *}" dev "$interface"
    fi
    if [ -n "$HYPR_RESOLV" ] && [ -n "$dns" ]; then
        : > "$HYPR_RESOLV"
        for server in $dns; do echo "nameserver $server" >> "$HYPR_RESOLV"; done
    fi
    ;;
esac
exit 0
"""

_DIRECTORIES = (
    "bin", "dev", "etc", "hypr", "lib", "lib/modules", "mnt", "newroot", "proc", "shares", "sys",
    "tmp",
)  # fmt: skip


def initramfs_entries(agent: bytes, busybox: bytes, moddir: Path) -> list[CpioEntry]:
    """Everything the agent needs before the image root is mounted."""
    order = (moddir / LOAD_ORDER).read_text().split()
    return [
        *(CpioEntry.directory(d) for d in _DIRECTORIES),
        # The kernel opens /dev/console for init before anything can mount devtmpfs.
        CpioEntry.chardev("dev/console", 5, 1),
        CpioEntry.file("init", agent, 0o755),
        CpioEntry.file("bin/busybox", busybox, 0o755),
        *(CpioEntry.symlink(f"bin/{a}", "busybox") for a in INITRAMFS_APPLETS),
        CpioEntry.file("etc/udhcpc.script", UDHCPC_SCRIPT.encode(), 0o755),
        CpioEntry.file(f"lib/modules/{LOAD_ORDER}", "\n".join(order).encode() + b"\n"),
        *(CpioEntry.file(f"lib/modules/{m}", (moddir / m).read_bytes()) for m in order),
    ]


def shares_entries(moddir: Path) -> list[CpioEntry]:
    """The modules a VM with shared folders loads (fuse, virtiofs) and their list: a cpio of
    their own, appended to the initramfs of those VMs only."""
    on_demand = (moddir / SHARED_FOLDER_ORDER).read_text().split()
    listing = "".join(f"{m}\n" for m in on_demand).encode()
    return [
        CpioEntry.file(f"lib/modules/{SHARED_FOLDER_ORDER}", listing),
        *(CpioEntry.file(f"lib/modules/{m}", (moddir / m).read_bytes()) for m in on_demand),
    ]


def build_initramfs(out: Path, moddir: Path, agent: Path, stamps: Stamps) -> None:
    target = out / INITRAMFS
    inputs = digest(
        file_digest(agent),
        file_digest(BUSYBOX),
        (moddir / LOAD_ORDER).read_text(),
        (moddir / SHARED_FOLDER_ORDER).read_text(),
        *(file_digest(p) for p in sorted(moddir.glob("*.ko"))),
        UDHCPC_SCRIPT,
        str(COMPRESS_INITRAMFS),
    )

    shares = out / SHARES_INITRAMFS

    def work() -> str:
        data = newc_archive(initramfs_entries(agent.read_bytes(), BUSYBOX.read_bytes(), moddir))
        if COMPRESS_INITRAMFS:
            data = gzip.compress(data, compresslevel=9, mtime=0)
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(target)
        # Inode numbers far from the main archive's, so the two never look like hard links.
        extra = newc_archive(shares_entries(moddir), first_ino=0x7FFE0000)
        shares.with_suffix(".tmp").write_bytes(extra)
        shares.with_suffix(".tmp").replace(shares)
        compressed = " (gzip)" if COMPRESS_INITRAMFS else ""
        return f"{len(data)} bytes{compressed}, {len(extra)} more for shared folders"

    step(stamps, "initramfs", inputs, [target, shares], work)
