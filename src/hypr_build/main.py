"""Build the guest assets: kernel, initramfs (agent + modules + busybox), busybox image.

    python -m hypr_build --out DIR

Outputs, all under DIR:
  vmlinuz                              Debian's cloud kernel (bzImage)
  vmlinux                              the same kernel uncompressed, booted through its PVH
                                       entry: no in-guest decompression, ~0.3 s faster
                                       under TCG (see hypr.guest.assets.preferred_kernel)
  initramfs.cpio                       /init (kestrel), busybox for udhcpc, virtio modules
  images/busybox/rootfs.squashfs       the built-in image
  images/busybox/manifest.json

Idempotent: each step records a digest of its inputs in DIR/.stamp.json and is skipped when
the digest and the outputs are unchanged. Work files live in DIR/.cache.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hypr_build.agent import build_agent
from hypr_build.common import BuildError, Stamps
from hypr_build.images import build_image
from hypr_build.initramfs import BUSYBOX, build_initramfs
from hypr_build.kernel import build_kernel


def build(out: Path) -> None:
    """Build (or bring up to date) every asset under `out`."""
    cache = out / ".cache"
    cache.mkdir(parents=True, exist_ok=True)
    if not BUSYBOX.exists():
        raise BuildError(f"{BUSYBOX} missing (apt-get install busybox-static)")
    stamps = Stamps(out / ".stamp.json")
    moddir = build_kernel(out, cache, stamps)
    agent = build_agent(cache, stamps)
    build_initramfs(out, moddir, agent, stamps)
    build_image(out, stamps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hypr_build",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, required=True, help="asset directory")
    args = parser.parse_args(argv)
    try:
        build(args.out.resolve())
    except (BuildError, OSError) as exc:
        print(f"build failed: {exc}", file=sys.stderr)
        return 1
    return 0
