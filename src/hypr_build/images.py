"""The built-in busybox image: a squashfs root and its manifest, as the image store reads
them from the asset directory."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from hypr_build.common import Stamps, digest, file_digest, run, step
from hypr_build.initramfs import BUSYBOX

IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SQUASHFS_COMPRESSION = "lz4"  # fastest to decompress under emulation; the kernel has it

IMAGE_PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
IMAGE_GROUP = "root:x:0:\nnogroup:x:65534:\n"
IMAGE_MANIFEST = {
    "name": "busybox",
    "tag": "latest",
    # As Docker's busybox: `sh` is the default command, so `hypr run busybox httpd -f` works.
    "entrypoint": [],
    "cmd": ["sh"],
    "env": [f"PATH={IMAGE_PATH}"],
    "workdir": "/",
    "exposed_ports": [],
}
_DIRECTORIES = (
    "bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "tmp", "var/www", "proc", "sys",
    "dev", "run", "var/tmp",
)  # fmt: skip


def _busybox_applets() -> list[str]:
    """Applet paths relative to /, e.g. "bin/ls", "usr/sbin/chroot"."""
    out = run([str(BUSYBOX), "--list-full"])
    return sorted({line.strip().lstrip("/") for line in out.splitlines() if line.strip()})


def stage_busybox_root(root: Path) -> None:
    """Lay out the busybox image's filesystem tree under `root`."""
    for d in _DIRECTORIES:
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    os.chmod(root / "var/tmp", 0o1777)
    os.chmod(root / "root", 0o700)
    shutil.copyfile(BUSYBOX, root / "bin/busybox")
    os.chmod(root / "bin/busybox", 0o755)
    for applet in _busybox_applets():
        link = root / applet
        if applet == "bin/busybox" or link.exists():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath("/bin/busybox", "/" + str(Path(applet).parent)))
    (root / "etc/passwd").write_text(IMAGE_PASSWD)
    (root / "etc/group").write_text(IMAGE_GROUP)


def build_image(out: Path, stamps: Stamps) -> None:
    image_dir = out / "images" / "busybox"
    squashfs = image_dir / "rootfs.squashfs"
    manifest = image_dir / "manifest.json"
    inputs = digest(
        file_digest(BUSYBOX),
        IMAGE_PASSWD,
        IMAGE_GROUP,
        SQUASHFS_COMPRESSION,
        json.dumps(IMAGE_MANIFEST, sort_keys=True),
    )

    def work() -> str:
        image_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="hypr-image-") as tmp:
            root = Path(tmp) / "root"
            stage_busybox_root(root)
            tmp_sq = squashfs.with_suffix(".tmp")
            tmp_sq.unlink(missing_ok=True)
            run(
                [
                    "mksquashfs", str(root), str(tmp_sq), "-noappend", "-all-root",
                    "-no-progress", "-comp", SQUASHFS_COMPRESSION, "-mkfs-time", "0",
                    "-all-time", "0",
                ]
            )  # fmt: skip
            tmp_sq.replace(squashfs)
        manifest.write_text(json.dumps(IMAGE_MANIFEST, indent=2) + "\n")
        return f"{squashfs.stat().st_size} bytes ({SQUASHFS_COMPRESSION})"

    step(stamps, "image busybox", inputs, [squashfs, manifest], work)
