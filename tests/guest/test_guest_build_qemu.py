"""Asset-builder helpers and the QEMU command line, without booting anything."""

from __future__ import annotations

import asyncio
import shutil
import struct
import subprocess
import sys
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

import pytest

from hypr.errors import InvalidArgument
from hypr.guest.assets import preferred_kernel
from hypr.guest.spec import (
    PROBE_ARGS,
    PROBE_MARKER,
    GuestNic,
    GuestSpec,
    WorkloadSpec,
    kernel_args,
    spec_cpio,
)
from hypr.vmm.adapter import NicConfig, VmConfig, VmHandle
from hypr.vmm.qemu import BootProbe, QemuAdapter, probe_boot
from hypr.vmm.tsc import host_tsc_khz, measured_khz
from hypr_build.common import Stamps
from hypr_build.kernel import SIGNATURE_MAGIC, extract_vmlinux, modinfo_depends, strip_signature


def fake_module(modinfo: bytes) -> bytes:
    """An ELF64 with just a section-name table and a .modinfo section."""
    shstrtab = b"\0.shstrtab\0.modinfo\0"
    body = shstrtab + modinfo
    shoff = 64 + len(body)
    header = bytearray(64)
    header[:5] = b"\x7fELF\x02"
    struct.pack_into("<Q", header, 0x28, shoff)
    struct.pack_into("<HHH", header, 0x3A, 64, 3, 1)

    def section(name: int, offset: int, size: int) -> bytes:
        sh = bytearray(64)
        struct.pack_into("<I", sh, 0, name)
        struct.pack_into("<QQ", sh, 0x18, offset, size)
        return bytes(sh)

    sections = section(0, 0, 0) + section(1, 64, len(shstrtab))
    sections += section(11, 64 + len(shstrtab), len(modinfo))
    return bytes(header) + body + sections


def test_modinfo_depends() -> None:
    module = fake_module(b"license=GPL\0depends=virtio,virtio_ring\0name=virtio_net\0")
    assert modinfo_depends(module) == ["virtio", "virtio_ring"]
    assert modinfo_depends(fake_module(b"depends=\0")) == []


def test_strip_signature() -> None:
    module = fake_module(b"depends=\0")
    signer, key_id, sig = b"Debian", b"\x01" * 20, b"\xaa" * 512
    # struct module_signature: algo, hash, id_type, signer_len, key_id_len, pad[3], sig_len
    info = bytes([0, 0, 2, len(signer), len(key_id), 0, 0, 0]) + struct.pack(">I", len(sig))
    signed = module + signer + key_id + sig + info + SIGNATURE_MAGIC
    assert strip_signature(signed) == module
    assert strip_signature(module) == module


def test_extract_vmlinux_rejects_non_bzimage() -> None:
    assert extract_vmlinux(b"\0" * 4096) is None


def test_stamps_skip_only_when_inputs_and_outputs_match(tmp_path: Path) -> None:
    out = tmp_path / "out"
    stamps = Stamps(tmp_path / "stamp.json")
    assert not stamps.fresh("step", "d1", [out])
    out.write_text("x")
    stamps.record("step", "d1")
    reloaded = Stamps(tmp_path / "stamp.json")
    assert reloaded.fresh("step", "d1", [out])
    assert not reloaded.fresh("step", "d2", [out])
    out.unlink()
    assert not reloaded.fresh("step", "d1", [out])


def test_preferred_kernel(tmp_path: Path) -> None:
    assert preferred_kernel(tmp_path) == tmp_path / "vmlinuz"
    (tmp_path / "vmlinux").write_bytes(b"")
    assert preferred_kernel(tmp_path) == tmp_path / "vmlinux"


def config(tmp_path: Path) -> VmConfig:
    initramfs = tmp_path / "initramfs.cpio"
    initramfs.write_bytes(b"SHARED")
    nics = [
        GuestNic("52:54:00:00:00:01", IPv4Interface("10.88.0.2/16"), IPv4Address("10.88.0.1")),
        GuestNic("52:54:00:00:00:02", None, None),
    ]
    workload = WorkloadSpec(argv=["sleep", "1"])
    return VmConfig(
        vm_id="vm42",
        vcpus=2,
        memory_mib=256,
        kernel=tmp_path / "vmlinux",
        initrd=initramfs,
        initrd_append=spec_cpio(workload),
        cmdline=kernel_args(GuestSpec("web", nics, ["10.88.0.1"], workload)),
        layers=[tmp_path / "rootfs.squashfs"],
        nics=[NicConfig("hyprtap0", nics[0].mac), NicConfig("hyprtap1", nics[1].mac)],
        runtime_dir=tmp_path / "run",
        console_log=tmp_path / "logs" / "vm42.log",
    )


def test_build_command(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    spec = QemuAdapter().build_command(cfg)
    argv = spec.argv
    joined = " ".join(argv)

    def value(flag: str) -> list[str]:
        return [argv[i + 1] for i, a in enumerate(argv) if a == flag]

    assert argv[0] == "qemu-system-x86_64"
    assert value("-M") == ["microvm,accel=tcg,pit=on,pic=on,rtc=on"]
    assert {"-nodefaults", "-no-user-config", "-nographic", "-no-reboot"} <= set(argv)
    assert value("-smp") == ["2"] and value("-m") == ["256"]
    assert value("-initrd") == [str(cfg.runtime_dir / "initrd.cpio")]
    assert value("-name") == ["hypr-vm42,debug-threads=on"]
    assert f"file,id=console,path={cfg.console_log},append=on" in value("-chardev")
    assert value("-drive") == [f"id=layer0,file={cfg.layers[0]},format=raw,if=none,readonly=on"]
    assert "virtio-blk-device,drive=layer0,serial=layer0" in value("-device")
    assert value("-netdev") == [
        "tap,id=net0,ifname=hyprtap0,script=no,downscript=no",
        "tap,id=net1,ifname=hyprtap1,script=no,downscript=no",
    ]
    assert "virtio-net-device,netdev=net1,mac=52:54:00:00:00:02" in value("-device")
    assert f"path={cfg.runtime_dir / 'agent.sock'},server=on,wait=off" in joined
    assert "virtserialport,chardev=agent,name=hypr.agent" in value("-device")
    assert "hypr.net=eth1,dhcp,,1500,52:54:00:00:00:02" in value("-append")[0]
    workload = WorkloadSpec(argv=["sleep", "1"])
    assert spec.files == {cfg.runtime_dir / "initrd.cpio": b"SHARED" + spec_cpio(workload)}


def test_each_layer_is_a_read_only_disk_named_by_its_serial(tmp_path: Path) -> None:
    layers = [tmp_path / f"l{i}.squashfs" for i in range(3)]
    cfg = VmConfig(**{**config(tmp_path).__dict__, "layers": layers})
    argv = QemuAdapter().build_command(cfg).argv
    drives = [argv[i + 1] for i, a in enumerate(argv) if a == "-drive"]
    assert drives == [
        f"id=layer{i},file={layers[i]},format=raw,if=none,readonly=on" for i in range(3)
    ]
    assert "virtio-blk-device,drive=layer2,serial=layer2" in argv


def test_more_devices_than_microvm_transports_are_refused(tmp_path: Path) -> None:
    base = config(tmp_path).__dict__  # two NICs and the agent port: 21 layers fit
    fits = VmConfig(**{**base, "layers": [tmp_path / "l.squashfs"] * 21})
    QemuAdapter().build_command(fits)
    too_many = VmConfig(**{**base, "layers": [tmp_path / "l.squashfs"] * 22})
    with pytest.raises(InvalidArgument, match="22 layers and the VM 2 NICs: that needs 25 virt"):
        QemuAdapter().build_command(too_many)
    with pytest.raises(InvalidArgument, match="at least one image layer"):
        QemuAdapter().build_command(VmConfig(**{**base, "layers": []}))


def test_kvm_command_uses_host_cpu(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    kvm = VmConfig(**{**cfg.__dict__, "accel": "kvm"})
    argv = QemuAdapter().build_command(kvm).argv
    assert "microvm,accel=kvm,pit=on,pic=on,rtc=on" in argv
    assert argv[argv.index("-cpu") + 1] == "host"


def test_wait_and_is_alive_for_foreign_and_dead_processes(tmp_path: Path) -> None:
    # Spawned outside the event loop: a foreign process that asyncio's child watcher never sees.
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])

    async def main() -> None:
        adapter = QemuAdapter()
        handle = VmHandle("notavm", proc.pid, tmp_path, tmp_path / "agent.sock")
        assert not adapter.is_alive(handle)  # a live pid, but not this VM's QEMU
        await asyncio.wait_for(adapter.wait(handle), 5)  # pidfd: no child relation needed
        proc.wait()
        assert not adapter.is_alive(handle)
        await adapter.wait(handle)  # already gone: returns at once

    asyncio.run(main())


def test_delete_removes_runtime_files(tmp_path: Path) -> None:
    async def main() -> None:
        adapter = QemuAdapter()
        run = tmp_path / "run"
        run.mkdir()
        (run / "initrd.cpio").write_bytes(b"x")
        handle = VmHandle("gone", 2**22 + 1, run, run / "agent.sock")
        await adapter.delete(handle)
        assert not run.exists()

    asyncio.run(main())


def test_hung_probe_is_killed(tmp_path: Path) -> None:
    fake_qemu = tmp_path / "qemu"
    pidfile = tmp_path / "pid"
    fake_qemu.write_text(f"#!/bin/sh\necho $$ > {pidfile}\nexec sleep 100\n")
    fake_qemu.chmod(0o755)
    took, why = asyncio.run(
        probe_boot(
            "kvm",
            BootProbe(tmp_path / "k", tmp_path / "i", PROBE_ARGS, PROBE_MARKER),
            binary=str(fake_qemu),
            budget=0.5,
        )
    )
    assert took is None and "no power-off" in why
    assert not Path(f"/proc/{pidfile.read_text().strip()}").exists()


def test_host_tsc_khz_is_plausible() -> None:
    khz = host_tsc_khz()
    assert khz is None or 100_000 < khz < 10_000_000


def test_tsc_rate_is_measured_in_a_child_process() -> None:
    khz = measured_khz()
    assert khz is not None and 100_000 < khz < 10_000_000


@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="no QEMU")
def test_create_reports_qemu_startup_failure(tmp_path: Path) -> None:
    cfg = VmConfig(**{**config(tmp_path).__dict__, "nics": [], "kernel": tmp_path / "missing"})

    async def main() -> None:
        with pytest.raises(RuntimeError, match="failed to start"):
            await QemuAdapter().create(cfg)

    asyncio.run(main())
