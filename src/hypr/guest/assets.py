"""The layout of the guest asset directory, as the runtime reads it.

The files are made at set-up by the build tool (`python -m hypr_build`); the runtime only
needs to know their names and which kernel to prefer.
"""

from __future__ import annotations

from pathlib import Path

KERNEL_BZIMAGE = "vmlinuz"
# The same kernel uncompressed, booted through its PVH entry: no in-guest decompression,
# ~0.3 s faster under TCG.
KERNEL_ELF = "vmlinux"
INITRAMFS = "initramfs.cpio"
# Appended to INITRAMFS for VMs with shared folders: the modules only they load.
SHARES_INITRAMFS = "initramfs-shares.cpio"


def preferred_kernel(assets: Path) -> Path:
    """The kernel to boot from an asset dir: vmlinux (PVH, faster) if built, else vmlinuz."""
    vmlinux = assets / KERNEL_ELF
    return vmlinux if vmlinux.exists() else assets / KERNEL_BZIMAGE
