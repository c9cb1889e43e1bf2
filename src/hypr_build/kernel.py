"""The guest kernel: Debian's cloud kernel from apt, its PVH vmlinux, and the modules the
agent loads, resolved from each module's .modinfo and prepared for a fast load."""

from __future__ import annotations

import gzip
import lzma
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Callable
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

from hypr.guest.assets import KERNEL_BZIMAGE, KERNEL_ELF
from hypr_build.common import BuildError, Stamps, digest, run, step, with_lists

KERNEL_META_PACKAGE = "linux-image-cloud-amd64"
# What the agent needs that the cloud kernel builds as modules; dependencies are added.
# virtio_console early: the agent opens its port right after the modules are in, and the
# port's name arrives asynchronously after the probe.
WANTED_MODULES = (
    "virtio_mmio",
    "virtio_console",
    "virtio_blk",
    "virtio_net",
    "squashfs",
    "overlay",
)
LOAD_ORDER = "load.order"
# Loaded by the agent only when a VM mounts shared folders (volumes, binds): every other boot
# would pay for them. Dependencies that the eager list already loads are left out.
SHARED_FOLDER_MODULES = ("fuse", "virtiofs")
SHARED_FOLDER_ORDER = "virtiofs.order"
SIGNATURE_MAGIC = b"~Module signature appended~\n"


def kernel_package() -> str:
    """The concrete linux-image-<ver>-cloud-amd64 package the meta package depends on."""
    out = run(["apt-cache", "depends", KERNEL_META_PACKAGE])
    for line in out.splitlines():
        dep = line.strip().removeprefix("Depends:").strip()
        if line.strip().startswith("Depends:") and dep.startswith("linux-image-"):
            return dep
    raise BuildError(f"no linux-image dependency found for {KERNEL_META_PACKAGE}")


def _download(package: str, dest: Path) -> Path:
    run(["apt-get", "download", package], cwd=dest)
    debs = sorted(dest.glob(f"{package}_*.deb"))
    if not debs:
        raise BuildError(f"apt-get download produced no .deb for {package}")
    return debs[-1]


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


def strip_btf(module: bytes) -> bytes:
    """The module without its .BTF section (BPF type info, unused in the guest).

    Loading the first module that has one makes the kernel parse the whole vmlinux BTF, and
    each module's own is checked at load: measured under TCG, module loading took ~220 ms
    with them and ~115 ms without."""
    with tempfile.TemporaryDirectory(prefix="hypr-ko-") as tmp:
        path = Path(tmp) / "m.ko"
        path.write_bytes(module)
        run(["objcopy", "--remove-section=.BTF", str(path)])
        return path.read_bytes()


def strip_signature(module: bytes) -> bytes:
    """The module without its appended signature (see the kernel's module_signature.h).

    Checking it costs a hash of the whole module and an RSA verification per load, emulated
    under TCG; the modules come from the same package as the kernel, checked by apt."""
    if not module.endswith(SIGNATURE_MAGIC):
        return module
    body = module[: -len(SIGNATURE_MAGIC)]
    # struct module_signature: algo, hash, id_type, signer_len, key_id_len, pad[3], sig_len
    signer_len, key_id_len = body[-9], body[-8]
    (sig_len,) = struct.unpack(">I", body[-4:])
    end = len(body) - 12 - sig_len - key_id_len - signer_len
    if end <= 0 or body[:4] != b"\x7fELF":
        raise BuildError("malformed module signature")
    return body[:end]


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


def _read_module(path: Path) -> bytes:
    """A module's bytes, decompressed here once so the guest never inflates one."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".zst"):
        return _decompress_cli(["zstd", "-dc"], data)
    return data


def _module_name(path: Path) -> str:
    return path.name.split(".ko")[0].replace("-", "_")


def resolve_modules(
    moddir: Path, wanted: tuple[str, ...] = WANTED_MODULES, loaded: frozenset[str] = frozenset()
) -> list[tuple[str, bytes]]:
    """`wanted` plus their dependencies, in load order; built-ins and the modules already
    `loaded` are skipped."""
    available = {_module_name(p): p for p in (moddir / "kernel").rglob("*.ko*")}
    builtin_file = moddir / "modules.builtin"
    builtin = (
        {_module_name(Path(line)) for line in builtin_file.read_text().split()}
        if builtin_file.exists()
        else set()
    )
    graph: dict[str, list[str]] = {}
    data: dict[str, bytes] = {}
    builtin |= loaded
    pending = [name for name in wanted if name not in builtin]
    while pending:
        name = pending.pop(0)
        if name in graph:
            continue
        if name not in available:
            raise BuildError(f"kernel module {name} is neither built in nor shipped")
        data[name] = _read_module(available[name])
        graph[name] = [dep for dep in modinfo_depends(data[name]) if dep not in builtin]
        pending += graph[name]
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        raise BuildError(f"module dependency cycle: {' -> '.join(exc.args[1])}") from None
    return [(name, data[name]) for name in order]


def _signatures_enforced(root: Path) -> bool:
    """True if the kernel refuses unsigned modules (then the signatures must stay)."""
    for config in (root / "boot").glob("config-*"):
        if "CONFIG_MODULE_SIG_FORCE=y" in config.read_text().splitlines():
            return True
    return False


def build_kernel(out: Path, cache: Path, stamps: Stamps) -> Path:
    """vmlinuz (and vmlinux) into `out`, the needed modules (uncompressed and, where the
    kernel allows it, unsigned and without BTF, in load order) into the cache; returns the
    module directory."""
    package = with_lists("kernel", kernel_package)
    moddir = cache / "modules"
    inputs = digest(package, *WANTED_MODULES, *SHARED_FOLDER_MODULES, "pvh", "unsigned", "no-btf")

    def work() -> str:
        with tempfile.TemporaryDirectory(prefix="hypr-kernel-") as tmp:
            tmpdir = Path(tmp)
            os.chmod(tmpdir, 0o755)  # apt's _apt sandbox user must be able to write here
            deb = with_lists("kernel", lambda: _download(package, tmpdir))
            root = tmpdir / "root"
            run(["dpkg-deb", "-x", str(deb), str(root)])
            vmlinuz = sorted((root / "boot").glob("vmlinuz-*"))
            kdirs = sorted((root / "lib" / "modules").iterdir())
            if not vmlinuz or not kdirs:
                raise BuildError(f"{deb.name} has no vmlinuz or /lib/modules")
            modules = resolve_modules(kdirs[-1])
            shared = resolve_modules(
                kdirs[-1], SHARED_FOLDER_MODULES, frozenset(n for n, _ in modules)
            )
            keep_signatures = _signatures_enforced(root)
            shutil.rmtree(moddir, ignore_errors=True)
            moddir.mkdir(parents=True)
            for name, data in modules + shared:
                ko = data if keep_signatures else strip_btf(strip_signature(data))
                (moddir / f"{name}.ko").write_bytes(ko)
            (moddir / LOAD_ORDER).write_text("".join(f"{n}.ko\n" for n, _ in modules))
            (moddir / SHARED_FOLDER_ORDER).write_text("".join(f"{n}.ko\n" for n, _ in shared))
            shutil.copyfile(vmlinuz[-1], out / KERNEL_BZIMAGE)
            elf = extract_vmlinux((out / KERNEL_BZIMAGE).read_bytes())
            (out / KERNEL_ELF).unlink(missing_ok=True)
            if elf is not None:
                (out / KERNEL_ELF).write_bytes(elf)
        pvh = "vmlinux for PVH boot" if elf is not None else "no vmlinux (cannot unpack)"
        signed = "signed" if keep_signatures else "unsigned"
        names = " ".join(n for n, _ in modules)
        on_demand = " ".join(n for n, _ in shared)
        return f"{package}, {pvh}, {signed} modules: {names}; for shared folders: {on_demand}"

    outputs = [out / KERNEL_BZIMAGE, moddir / LOAD_ORDER, moddir / SHARED_FOLDER_ORDER]
    step(stamps, "kernel", inputs, outputs, work)
    return moddir
