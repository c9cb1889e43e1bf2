"""Helpers for tests that boot real microVMs (imported by conftest.py and the VM tests).

Every bridge, TAP and DHCP server lives in a namespace created here and deleted at the end;
QEMU runs inside it through `ip netns exec` (a wrapper script passed as the QEMU binary).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from ipaddress import IPv4Interface
from pathlib import Path
from typing import TypeVar

from hypr.guest.assets import preferred_kernel
from hypr.guest.protocol import AgentClient
from hypr.guest.spec import GuestNic, GuestSpec, WorkloadSpec, kernel_args, spec_cpio
from hypr.guest.wire import ExecResult, WorkloadExit
from hypr.vmm.adapter import NicConfig, VmConfig, VmHandle
from hypr.vmm.qemu import QemuAdapter

BRIDGE_ADDR = IPv4Interface("10.99.0.1/24")


def vm_support_missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, TAP devices)"
    for tool in ("qemu-system-x86_64", "musl-gcc", "mksquashfs", "ip", "apt-get"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun"
    return None


class Netns:
    """A network namespace with bridge br0 (10.99.0.1/24) for the VMs' TAPs."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.workdir = workdir
        self.qemu = workdir / "qemu-in-netns"
        self._taps = 0

    def ip(self, *args: str) -> str:
        return self.run("ip", *args)

    def run(self, *argv: str) -> str:
        proc = subprocess.run(
            ["ip", "netns", "exec", self.name, *argv], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} in {self.name}: {proc.stderr.strip()}")
        return proc.stdout

    def setup(self) -> None:
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.ip("link", "set", "lo", "up")
        self.ip("link", "add", "br0", "type", "bridge")
        self.ip("addr", "add", str(BRIDGE_ADDR), "dev", "br0")
        self.ip("link", "set", "br0", "up")
        self.qemu.write_text(f'#!/bin/sh\nexec ip netns exec {self.name} qemu-system-x86_64 "$@"\n')
        self.qemu.chmod(0o755)

    def add_tap(self) -> str:
        name = f"tap{self._taps}"
        self._taps += 1
        self.ip("tuntap", "add", "dev", name, "mode", "tap")
        self.ip("link", "set", name, "master", "br0", "up")
        return name

    def teardown(self) -> None:
        # Everything still running in the namespace was started by these tests.
        pids = subprocess.run(
            ["ip", "netns", "pids", self.name], capture_output=True, text=True, check=False
        ).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", self.name], check=False)


@dataclass(frozen=True)
class Nic:
    """A TAP on the bridge and what the guest is told about the NIC behind it."""

    tap: str
    guest: GuestNic

    @property
    def mac(self) -> str:
        return self.guest.mac


@dataclass
class GuestVm:
    adapter: QemuAdapter
    config: VmConfig
    handle: VmHandle

    def console(self) -> str:
        return self.config.console_log.read_text(errors="replace")


class VmFactory:
    """Boots VMs on the netns bridge and kills whatever is left at the end."""

    def __init__(self, assets: Path, netns: Netns, workdir: Path) -> None:
        self.assets = assets
        self.netns = netns
        self.workdir = workdir
        self.adapter = QemuAdapter(binary=str(netns.qemu))
        self.vms: list[GuestVm] = []
        self._macs = 0

    def mac(self) -> str:
        self._macs += 1
        return f"52:54:00:99:00:{self._macs:02x}"

    def static_nic(self, last_octet: int, mtu: int = 1500) -> Nic:
        guest = GuestNic(
            mac=self.mac(),
            address=IPv4Interface(f"10.99.0.{last_octet}/24"),
            gateway=BRIDGE_ADDR.ip,
            mtu=mtu,
        )
        return Nic(self.netns.add_tap(), guest)

    def dhcp_nic(self, mac: str) -> Nic:
        return Nic(self.netns.add_tap(), GuestNic(mac=mac, address=None, gateway=None))

    def config(
        self,
        name: str,
        workload: WorkloadSpec,
        nics: list[Nic] | None = None,
        dns: list[str] | None = None,
        memory_mib: int = 128,
        layers: list[Path] | None = None,
    ) -> VmConfig:
        """`layers` (bottom first) default to the built-in busybox image."""
        run = self.workdir / name
        nics = nics if nics is not None else []
        layers = layers or [self.assets / "images" / "busybox" / "rootfs.squashfs"]
        guest = GuestSpec(
            name, [n.guest for n in nics], dns if dns is not None else [], workload, len(layers)
        )
        return VmConfig(
            vm_id=f"{name}-{uuid.uuid4().hex[:6]}",
            vcpus=1,
            memory_mib=memory_mib,
            kernel=preferred_kernel(self.assets),
            initrd=self.assets / "initramfs.cpio",
            initrd_append=spec_cpio(workload),
            cmdline=kernel_args(guest),
            layers=layers,
            nics=[NicConfig(n.tap, n.mac) for n in nics],
            runtime_dir=run,
            console_log=run / "console.log",
        )

    async def boot(self, config: VmConfig) -> GuestVm:
        handle = await self.adapter.create(config)
        vm = GuestVm(self.adapter, config, handle)
        self.vms.append(vm)
        return vm

    def cleanup(self) -> None:
        async def kill_all() -> None:
            for vm in self.vms:
                if self.adapter.is_alive(vm.handle):
                    await self.adapter.kill(vm.handle)

        asyncio.run(kill_all())


T = TypeVar("T")
BOOT_TIMEOUT = 90.0


async def connect(vm: GuestVm, **kw: Callable[[WorkloadExit], None]) -> AgentClient:
    client = await asyncio.wait_for(AgentClient.connect(vm.handle.agent_socket, **kw), 30)
    await asyncio.wait_for(client.wait_ready(), BOOT_TIMEOUT)
    return client


def with_agent(vm: GuestVm, body: Callable[[AgentClient], Awaitable[T]]) -> T:
    """Run `body` with a fresh client connected to `vm`, in its own event loop."""

    async def main() -> T:
        client = await connect(vm)
        try:
            return await asyncio.wait_for(body(client), 60)
        finally:
            await client.close()

    return asyncio.run(main())


def sh(vm: GuestVm, script: str, user: str | None = None) -> ExecResult:
    """`sh -c script` in `vm` (as `user`, else as the workload's user)."""

    async def body(client: AgentClient) -> ExecResult:
        return await client.exec(["sh", "-c", script], user=user)

    return with_agent(vm, body)


def shutdown_and_wait(vm: GuestVm, grace: float = 5) -> WorkloadExit:
    async def main() -> WorkloadExit:
        client = await connect(vm)
        final = await client.shutdown(grace)
        await asyncio.wait_for(vm.adapter.wait(vm.handle), 20)
        return final

    return asyncio.run(main())
