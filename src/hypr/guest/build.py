"""Build the guest assets: kernel, initramfs (agent + modules + busybox), busybox image.

    python -m hypr.guest.build --out DIR

Outputs, all under DIR:
  vmlinuz                              Debian's cloud kernel (bzImage)
  vmlinux                              the same kernel uncompressed, booted through its PVH
                                       entry: no in-guest decompression, ~0.3 s faster
                                       under TCG (see `preferred_kernel`)
  initramfs.cpio                       /init (kestrel), busybox for udhcpc, virtio modules
  images/busybox/rootfs.squashfs       the built-in image
  images/busybox/manifest.json

Idempotent: each step records a digest of its inputs in DIR/.stamp.json and is skipped when
the digest and the outputs are unchanged. Work files live in DIR/.cache.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import lzma
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from hypr.guest.cpio import CpioEntry, newc_archive

T = TypeVar("T")

AGENT_SOURCE = Path(__file__).parent / "agent" / "kestrel.c"
KERNEL_META_PACKAGE = "linux-image-cloud-amd64"
BUSYBOX = Path("/bin/busybox")
# What the agent needs that the cloud kernel builds as modules; dependencies are added.
WANTED_MODULES = (
    "virtio_mmio",
    "virtio_blk",
    "virtio_net",
    "virtio_console",
    "squashfs",
    "overlay",
)
# Busybox applets the initramfs needs besides the agent (DHCP only).
INITRAMFS_APPLETS = ("sh", "udhcpc", "ip")
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Measured under TCG: the kernel unpacks the plain 3 MB archive in ~60 ms, the 1.3 MB gzip
# one in ~130 ms (inflate is emulated CPU work, loading the file is not), so: uncompressed.
COMPRESS_INITRAMFS = False
SQUASHFS_COMPRESSION = "lz4"  # fastest to decompress under emulation; the kernel has it

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


class BuildError(Exception):
    """A step failed; the message is the one line shown to the user."""


def _log(message: str) -> None:
    print(message, flush=True)


def _run(argv: list[str], cwd: Path | None = None) -> str:
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise BuildError(f"{argv[0]} not found (is its package installed?)") from exc
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise BuildError(f"{' '.join(argv)} failed: {detail[-1] if detail else proc.returncode}")
    return proc.stdout


def _digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Stamps:
    """Input digests of finished steps, persisted so a rerun can skip them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.data: dict[str, str] = json.loads(path.read_text())
        except (OSError, ValueError):
            self.data = {}

    def fresh(self, step: str, digest: str, outputs: Iterable[Path]) -> bool:
        return self.data.get(step) == digest and all(p.exists() for p in outputs)

    def record(self, step: str, digest: str) -> None:
        self.data[step] = digest
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True))
        tmp.replace(self.path)


def _step(
    stamps: Stamps, step: str, digest: str, outputs: list[Path], work: Callable[[], str]
) -> None:
    """Run `work` (which returns a short summary) unless the step is fresh."""
    if stamps.fresh(step, digest, outputs):
        _log(f"{step}: up to date")
        return
    summary = work()
    stamps.record(step, digest)
    _log(f"{step}: {summary}")


# ------------------------------------------------------------------------------ kernel


def kernel_package() -> str:
    """The concrete linux-image-<ver>-cloud-amd64 package the meta package depends on."""
    out = _run(["apt-cache", "depends", KERNEL_META_PACKAGE])
    for line in out.splitlines():
        dep = line.strip().removeprefix("Depends:").strip()
        if line.strip().startswith("Depends:") and dep.startswith("linux-image-"):
            return dep
    raise BuildError(f"no linux-image dependency found for {KERNEL_META_PACKAGE}")


def _download(package: str, dest: Path) -> Path:
    _run(["apt-get", "download", package], cwd=dest)
    debs = sorted(dest.glob(f"{package}_*.deb"))
    if not debs:
        raise BuildError(f"apt-get download produced no .deb for {package}")
    return debs[-1]


def _with_lists(what: str, fn: Callable[[], T]) -> T:
    """Run an apt query; if it fails (no or stale package lists), `apt-get update` once."""
    try:
        return fn()
    except BuildError:
        _log(f"{what}: failed, running apt-get update and retrying")
        _run(["apt-get", "update"])
        return fn()


def modinfo_depends(module: bytes) -> list[str]:
    """Read `depends=` from a kernel module's .modinfo ELF section (no modinfo tool here)."""
    if module[:4] != b"\x7fELF" or module[4] != 2:
        raise BuildError("not an ELF64 kernel module")
    (shoff,) = struct.unpack_from("<Q", module, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", module, 0x3A)

    def section(i: int) -> tuple[int, int, int]:
        base = shoff + i * shentsize
        (name,) = struct.unpack_from("<I", module, base)
        offset, size = struct.unpack_from("<QQ", module, base + 0x18)
        return name, offset, size

    _, stroff, _ = section(shstrndx)
    for i in range(shnum):
        name, offset, size = section(i)
        end = module.index(b"\0", stroff + name)
        if module[stroff + name : end] == b".modinfo":
            for field in module[offset : offset + size].split(b"\0"):
                if field.startswith(b"depends="):
                    return [d for d in field[8:].decode().split(",") if d]
            return []
    raise BuildError("module has no .modinfo section")


# Magic numbers of the compressors a bzImage payload may use, and how to undo each.
_PAYLOAD_FORMATS: tuple[tuple[bytes, Callable[[bytes], bytes]], ...] = (
    (b"\x1f\x8b", gzip.decompress),
    (b"\xfd7zXZ\x00", lambda d: lzma.decompress(d, format=lzma.FORMAT_XZ)),
    (b"\x02\x21\x4c\x18", lambda d: _decompress_cli(["lz4", "-dc"], d)),
    (b"\x28\xb5\x2f\xfd", lambda d: _decompress_cli(["zstd", "-dc"], d)),
)


def _decompress_cli(argv: list[str], data: bytes) -> bytes:
    # The kernel appends the decompressed size after the stream; the tools warn, not fail.
    proc = subprocess.run(argv, input=data, capture_output=True, check=False)
    return proc.stdout


def extract_vmlinux(bzimage: bytes) -> bytes | None:
    """The uncompressed ELF kernel inside a bzImage, or None if it cannot be unpacked here."""
    if bzimage[0x202:0x206] != b"HdrS":
        return None
    setup_sects = bzimage[0x1F1] or 4
    payload_offset, payload_length = struct.unpack_from("<II", bzimage, 0x248)
    start = (setup_sects + 1) * 512 + payload_offset
    payload = bzimage[start : start + payload_length]
    for magic, decompress in _PAYLOAD_FORMATS:
        if payload.startswith(magic):
            try:
                elf = decompress(payload)
            except (OSError, ValueError, EOFError, lzma.LZMAError):
                return None
            return elf if elf[:4] == b"\x7fELF" else None
    return None


def preferred_kernel(assets: Path) -> Path:
    """The kernel to boot from an asset dir: vmlinux (PVH, faster) if built, else vmlinuz."""
    vmlinux = assets / "vmlinux"
    return vmlinux if vmlinux.exists() else assets / "vmlinuz"


def _read_module(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".zst"):
        return _decompress_cli(["zstd", "-dc"], data)
    return data


def _module_name(path: Path) -> str:
    return path.name.split(".ko")[0].replace("-", "_")


def resolve_modules(moddir: Path) -> list[tuple[str, bytes]]:
    """WANTED_MODULES plus their dependencies, in load order; built-ins are skipped."""
    available = {_module_name(p): p for p in (moddir / "kernel").rglob("*.ko*")}
    builtin_file = moddir / "modules.builtin"
    builtin = (
        {_module_name(Path(line)) for line in builtin_file.read_text().split()}
        if builtin_file.exists()
        else set()
    )
    order: list[tuple[str, bytes]] = []
    seen: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in seen or name in builtin:
            return
        if name in chain:
            raise BuildError(f"module dependency cycle: {' -> '.join((*chain, name))}")
        if name not in available:
            raise BuildError(f"kernel module {name} is neither built in nor shipped")
        data = _read_module(available[name])
        for dep in modinfo_depends(data):
            visit(dep, (*chain, name))
        seen.add(name)
        order.append((name, data))

    for wanted in WANTED_MODULES:
        visit(wanted, ())
    return order


def build_kernel(out: Path, cache: Path, stamps: Stamps) -> None:
    """vmlinuz (and vmlinux) into `out`, the needed modules (uncompressed, in load order)
    into the cache."""
    package = _with_lists("kernel", kernel_package)
    moddir = cache / "modules"
    digest = _digest(package, *WANTED_MODULES, "pvh")

    def work() -> str:
        with tempfile.TemporaryDirectory(prefix="hypr-kernel-") as tmp:
            tmpdir = Path(tmp)
            os.chmod(tmpdir, 0o755)  # apt's _apt sandbox user must be able to write here
            deb = _with_lists("kernel", lambda: _download(package, tmpdir))
            root = tmpdir / "root"
            _run(["dpkg-deb", "-x", str(deb), str(root)])
            vmlinuz = sorted((root / "boot").glob("vmlinuz-*"))
            kdirs = sorted((root / "lib" / "modules").iterdir())
            if not vmlinuz or not kdirs:
                raise BuildError(f"{deb.name} has no vmlinuz or /lib/modules")
            modules = resolve_modules(kdirs[-1])
            shutil.rmtree(moddir, ignore_errors=True)
            moddir.mkdir(parents=True)
            for name, data in modules:
                (moddir / f"{name}.ko").write_bytes(data)
            (moddir / "load.order").write_text("".join(f"{n}.ko\n" for n, _ in modules))
            shutil.copyfile(vmlinuz[-1], out / "vmlinuz")
            elf = extract_vmlinux((out / "vmlinuz").read_bytes())
            (out / "vmlinux").unlink(missing_ok=True)
            if elf is not None:
                (out / "vmlinux").write_bytes(elf)
        pvh = "vmlinux for PVH boot" if elf is not None else "no vmlinux (cannot unpack)"
        return f"{package}, {pvh}, modules: {' '.join(n for n, _ in modules)}"

    _step(stamps, "kernel", digest, [out / "vmlinuz", moddir / "load.order"], work)


# ------------------------------------------------------------------------------- agent


def build_agent(cache: Path, stamps: Stamps) -> Path:
    """Compile kestrel.c with musl, static, size-optimized, stripped."""
    binary = cache / "kestrel"
    source = AGENT_SOURCE.read_bytes()
    cc = shutil.which("musl-gcc")
    if cc is None:
        raise BuildError("musl-gcc not found (apt-get install musl-tools)")
    flags = ["-static", "-Os", "-Wall", "-Wextra", "-Werror", "-s"]

    def work() -> str:
        tmp = binary.with_suffix(".tmp")
        _run([cc, *flags, "-o", str(tmp), str(AGENT_SOURCE)])
        tmp.replace(binary)
        return f"{binary.stat().st_size} bytes"

    _step(stamps, "agent", _digest(source, *flags, _run([cc, "-dumpversion"])), [binary], work)
    return binary


# --------------------------------------------------------------------------- initramfs


def initramfs_entries(agent: bytes, busybox: bytes, moddir: Path) -> list[CpioEntry]:
    """Everything the agent needs before the image root is mounted."""
    order = (moddir / "load.order").read_text().split()
    entries = [
        CpioEntry.directory(d)
        for d in (
            "bin",
            "dev",
            "etc",
            "hypr",
            "lib",
            "lib/modules",
            "mnt",
            "newroot",
            "proc",
            "sys",
            "tmp",
        )
    ]
    entries += [
        # The kernel opens /dev/console for init before anything can mount devtmpfs.
        CpioEntry.chardev("dev/console", 5, 1),
        CpioEntry.file("init", agent, 0o755),
        CpioEntry.file("bin/busybox", busybox, 0o755),
        *(CpioEntry.symlink(f"bin/{a}", "busybox") for a in INITRAMFS_APPLETS),
        CpioEntry.file("etc/udhcpc.script", UDHCPC_SCRIPT.encode(), 0o755),
        CpioEntry.file("lib/modules/load.order", "\n".join(order).encode() + b"\n"),
        *(CpioEntry.file(f"lib/modules/{m}", (moddir / m).read_bytes()) for m in order),
    ]
    return entries


def build_initramfs(out: Path, cache: Path, agent: Path, stamps: Stamps) -> None:
    moddir = cache / "modules"
    target = out / "initramfs.cpio"
    digest = _digest(
        _file_digest(agent),
        _file_digest(BUSYBOX),
        (moddir / "load.order").read_text(),
        *(_file_digest(p) for p in sorted(moddir.glob("*.ko"))),
        UDHCPC_SCRIPT,
        str(COMPRESS_INITRAMFS),
    )

    def work() -> str:
        data = newc_archive(initramfs_entries(agent.read_bytes(), BUSYBOX.read_bytes(), moddir))
        if COMPRESS_INITRAMFS:
            data = gzip.compress(data, compresslevel=9, mtime=0)
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(target)
        return f"{len(data)} bytes{' (gzip)' if COMPRESS_INITRAMFS else ''}"

    _step(stamps, "initramfs", digest, [target], work)


# ------------------------------------------------------------------------------- image


def _busybox_applets() -> list[str]:
    """Applet paths relative to /, e.g. "bin/ls", "usr/sbin/chroot"."""
    out = _run([str(BUSYBOX), "--list-full"])
    return sorted({line.strip().lstrip("/") for line in out.splitlines() if line.strip()})


def stage_busybox_root(root: Path) -> None:
    """Lay out the busybox image's filesystem tree under `root`."""
    for d in (
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc",
        "root",
        "tmp",
        "var/www",
        "proc",
        "sys",
        "dev",
        "run",
        "var/tmp",
    ):
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
    digest = _digest(
        _file_digest(BUSYBOX),
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
            _run(
                [
                    "mksquashfs",
                    str(root),
                    str(tmp_sq),
                    "-noappend",
                    "-all-root",
                    "-no-progress",
                    "-comp",
                    SQUASHFS_COMPRESSION,
                    "-mkfs-time",
                    "0",
                    "-all-time",
                    "0",
                ]
            )
            tmp_sq.replace(squashfs)
        manifest.write_text(json.dumps(IMAGE_MANIFEST, indent=2) + "\n")
        return f"{squashfs.stat().st_size} bytes ({SQUASHFS_COMPRESSION})"

    _step(stamps, "image busybox", digest, [squashfs, manifest], work)


# -------------------------------------------------------------------------------- main


def build(out: Path) -> None:
    """Build (or bring up to date) every asset under `out`."""
    cache = out / ".cache"
    cache.mkdir(parents=True, exist_ok=True)
    if not BUSYBOX.exists():
        raise BuildError(f"{BUSYBOX} missing (apt-get install busybox-static)")
    stamps = Stamps(out / ".stamp.json")
    build_kernel(out, cache, stamps)
    agent = build_agent(cache, stamps)
    build_initramfs(out, cache, agent, stamps)
    build_image(out, stamps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hypr.guest.build",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, required=True, help="asset directory")
    args = parser.parse_args(argv)
    try:
        build(args.out.resolve())
    except BuildError as exc:
        print(f"build failed: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"build failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
