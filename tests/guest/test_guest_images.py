"""Real images in real guests: stacked squashfs layers with overlayfs whiteouts, an ordinary
glibc distribution's rootfs, users from the image's /etc/passwd, the stop signal.

Layers are made here from tar streams (tar2sqfs reads them on stdin: whiteouts and xattrs
never touch the host's disk); the Debian rootfs is built once with mmdebstrap and cached
outside the repo, under /var/cache/hypr-tests/.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from guestvm import GuestVm, VmFactory, sh, shutdown_and_wait

from hypr.guest.spec import WorkloadSpec

pytestmark = pytest.mark.vm

CACHE = Path("/var/cache/hypr-tests")
DEBIAN_RECIPE = (
    "mmdebstrap", "--quiet", "--variant=essential", "--include=python3-minimal",
    "--format=tar", "bookworm",
)  # fmt: skip
TAR2SQFS = ("tar2sqfs", "--quiet", "--force", "--compressor", "lz4")
DOCKER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def tar2sqfs(tar: bytes | Path, out: Path) -> Path:
    """A squashfs made from a tar stream, without unpacking it anywhere."""
    data = tar.read_bytes() if isinstance(tar, Path) else tar
    subprocess.run([*TAR2SQFS, str(out)], input=data, check=True, capture_output=True)
    return out


def layer_tar(entries: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return out.getvalue()


def entry(
    name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, mode: int = 0o644
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.mode = kind, mode
    return info, data


def whiteout(name: str) -> tuple[tarfile.TarInfo, bytes]:
    """Overlayfs's own whiteout: a character device 0:0 where the file was."""
    info, data = entry(name, kind=tarfile.CHRTYPE, mode=0)
    info.devmajor = info.devminor = 0
    return info, data


def opaque_dir(name: str) -> tuple[tarfile.TarInfo, bytes]:
    """A directory that hides everything below it in lower layers."""
    info, data = entry(name, kind=tarfile.DIRTYPE, mode=0o755)
    info.pax_headers = {"SCHILY.xattr.trusted.overlay.opaque": "y"}
    return info, data


@pytest.fixture(scope="module")
def layers(assets: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """busybox (the built-in image) + a layer of files + a layer that deletes, hides and
    overrides some of them and adds a user with a supplementary group."""
    if shutil.which("tar2sqfs") is None:
        pytest.skip("tar2sqfs not installed (squashfs-tools-ng)")
    out = tmp_path_factory.mktemp("layers")
    middle = layer_tar([
        entry("data", kind=tarfile.DIRTYPE, mode=0o755),
        entry("data/keep.txt", b"middle\n"),
        entry("data/gone.txt", b"deleted above\n"),
        entry("opq", kind=tarfile.DIRTYPE, mode=0o755),
        entry("opq/old.txt", b"hidden above\n"),
        entry("middle.txt", b"from the middle layer\n"),
    ])  # fmt: skip
    top = layer_tar([
        entry("data", kind=tarfile.DIRTYPE, mode=0o755),
        entry("data/keep.txt", b"top\n"),
        whiteout("data/gone.txt"),
        opaque_dir("opq"),
        entry("opq/new.txt", b"new\n"),
        entry("etc", kind=tarfile.DIRTYPE, mode=0o755),
        entry("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"),
        entry("etc/group", b"root:x:0:\napp:x:1000:\nextra:x:2000:other,app\n"),
    ])  # fmt: skip
    return [
        assets / "images" / "busybox" / "rootfs.squashfs",
        tar2sqfs(middle, out / "middle.squashfs"),
        tar2sqfs(top, out / "top.squashfs"),
    ]


TRAP = "trap 'echo got-usr1; exit 7' USR1; echo ready; while :; do sleep 0.1; done"


@pytest.fixture(scope="module")
def stacked(vms: VmFactory, layers: list[Path]) -> Iterator[tuple[GuestVm, GuestVm]]:
    """Two VMs on the same three layer files at once: read-only disks are shared."""
    app = vms.config(
        "stacked",
        WorkloadSpec(argv=["sh", "-c", TRAP], user="app", stop_signal="SIGUSR1"),
        layers=layers,
    )
    twin = vms.config("twin", WorkloadSpec(argv=["sleep", "100000"]), layers=layers)

    async def boot() -> tuple[GuestVm, GuestVm]:
        return await vms.boot(app), await vms.boot(twin)

    pair = asyncio.run(boot())
    yield pair
    for vm in pair:
        if vm.adapter.is_alive(vm.handle):
            asyncio.run(vm.adapter.kill(vm.handle))


def test_upper_layers_win_and_whiteouts_hide(stacked: tuple[GuestVm, GuestVm]) -> None:
    vm, _ = stacked
    assert sh(vm, "cat /data/keep.txt /middle.txt").stdout == b"top\nfrom the middle layer\n"
    assert sh(vm, "test -e /data/gone.txt || echo gone").stdout == b"gone\n"
    assert sh(vm, "ls -A /opq").stdout == b"new.txt\n"
    assert sh(vm, "ls /bin/busybox").exit_code == 0  # the bottom layer is there too


def test_each_vm_writes_its_own_layer(stacked: tuple[GuestVm, GuestVm]) -> None:
    vm, twin = stacked
    assert sh(vm, "echo mine > /data/keep.txt && rm /middle.txt", user="root").exit_code == 0
    assert sh(vm, "cat /data/keep.txt; test -e /middle.txt || echo rm").stdout == b"mine\nrm\n"
    assert sh(twin, "cat /data/keep.txt /middle.txt").stdout == b"top\nfrom the middle layer\n"


def test_user_from_the_images_passwd_and_group(stacked: tuple[GuestVm, GuestVm]) -> None:
    vm, twin = stacked
    # The workload's user is also the exec sessions' default, as with docker exec.
    assert sh(vm, "id -u; id -g; id -G; echo $HOME").stdout == b"1000\n1000\n1000 2000\n/home/app\n"
    assert sh(vm, "id -u; id -g; echo $HOME", user="0:2000").stdout == b"0\n2000\n/root\n"
    assert sh(vm, "id -u; id -g", user="app:extra").stdout == b"1000\n2000\n"
    assert sh(twin, "id -u; echo $HOME").stdout == b"0\n/root\n"
    unknown = sh(twin, "id", user="nosuch")
    assert unknown.exit_code == 126
    assert unknown.stderr == b"unable to find user nosuch: no matching entries in passwd file\n"
    group = sh(twin, "id", user="app:nogroup")
    assert group.exit_code == 126
    assert group.stderr == b"unable to find group nogroup: no matching entries in group file\n"


def test_stop_signal_reaches_the_workload(stacked: tuple[GuestVm, GuestVm]) -> None:
    vm, _ = stacked
    final = shutdown_and_wait(vm, grace=30)
    assert final.exit_code == 7  # the trap ran: SIGUSR1, not SIGTERM (which kills sh)
    assert "got-usr1" in vm.console()


# ------------------------------------------------------------ an ordinary distribution


@pytest.fixture(scope="module")
def debian_rootfs() -> Path:
    """Debian bookworm (essential + python3-minimal) as one squashfs, built once."""
    for tool in ("mmdebstrap", "tar2sqfs"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")
    key = hashlib.sha256("\0".join(DEBIAN_RECIPE + TAR2SQFS).encode()).hexdigest()[:16]
    out = CACHE / f"debian-{key}" / "rootfs.squashfs"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tar = out.with_name("rootfs.tar")
        subprocess.run([*DEBIAN_RECIPE, str(tar)], check=True, capture_output=True)
        tar2sqfs(tar, out.with_suffix(".partial"))
        out.with_suffix(".partial").replace(out)
        tar.unlink()
    return out


DEBIAN_IP = "10.99.0.60"


@pytest.fixture(scope="module")
def debian(vms: VmFactory, debian_rootfs: Path) -> Iterator[GuestVm]:
    config = vms.config(
        "deb",
        WorkloadSpec(argv=["sleep", "infinity"]),
        nics=[vms.static_nic(60)],
        dns=["10.99.0.53"],
        memory_mib=256,
        layers=[debian_rootfs],
    )
    vm = asyncio.run(vms.boot(config))
    yield vm
    if vm.adapter.is_alive(vm.handle):
        asyncio.run(vm.adapter.kill(vm.handle))


def test_debian_boots_and_runs_python(debian: GuestVm) -> None:
    result = sh(debian, "python3 -c 'import sys, platform; print(platform.libc_ver()[0], 6*7)'")
    assert result.stdout == b"glibc 42\n", result.stderr
    assert sh(debian, "echo $PATH").stdout.decode().strip() == DOCKER_PATH


def test_debian_etc_written_by_hypr(debian: GuestVm) -> None:
    assert sh(debian, "cat /etc/hostname; hostname").stdout == b"deb\ndeb\n"
    assert sh(debian, "cat /etc/resolv.conf").stdout == b"nameserver 10.99.0.53\n"
    hosts = sh(debian, "cat /etc/hosts").stdout.decode()
    assert "127.0.0.1\tlocalhost" in hosts and f"{DEBIAN_IP}\tdeb" in hosts
    # glibc's resolver reads them: names resolve without any network service.
    assert sh(debian, "getent hosts deb").stdout.split() == [DEBIAN_IP.encode(), b"deb"]


def test_debian_shm_and_tmp_are_writable_by_anyone(debian: GuestVm) -> None:
    script = "touch /dev/shm/x /tmp/y && stat -c %a /tmp && id -un"
    assert sh(debian, script, user="daemon").stdout == b"1777\ndaemon\n"
    assert sh(debian, "stat -c %a /dev/shm").stdout == b"1777\n"
    assert sh(debian, "grep -c ' /dev/pts devpts ' /proc/mounts").stdout == b"1\n"


def test_debian_user_by_name_and_by_ids(debian: GuestVm) -> None:
    assert sh(debian, "id -u; id -g; echo $HOME", user="daemon").stdout == b"1\n1\n/usr/sbin\n"
    # Ids need no passwd entry; HOME is then "/", as in Docker.
    assert sh(debian, "id -u; id -g; echo $HOME", user="1234:5678").stdout == b"1234\n5678\n/\n"


def test_a_missing_layer_disk_powers_off_with_a_reason(vms: VmFactory) -> None:
    config = vms.config("nolayer", WorkloadSpec(argv=["true"]))
    config = replace(config, cmdline=config.cmdline.replace("hypr.layers=1", "hypr.layers=2"))

    async def boot_until_off() -> GuestVm:
        vm = await vms.boot(config)
        await asyncio.wait_for(vm.adapter.wait(vm.handle), 60)
        return vm

    console = asyncio.run(boot_until_off()).console()
    assert "image layer 1 of 2: no disk with serial layer1" in console
    assert "fatal: cannot find the image's layers" in console
