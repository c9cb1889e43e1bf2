"""The build VM: a microVM booted from a stage's layers, in the guest agent's build mode,
that runs one RUN step and hands back what it changed as an OCI layer.

It has no TAP and no bridge. Its one NIC is QEMU's user-mode network: `isolated` (the
default, Docker's `--network none` plus the build proxy) reaches nothing but the proxy,
forwarded per connection to hyprd's build proxy on the host; `network=default` gets NAT
through the host's own connections instead. The step's layer is the overlay's upper
directory, read with busybox tar from the agent's initramfs (docs/guest-agent.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import Literal

from hypr.build.layer import upper_to_oci
from hypr.guest.protocol import AgentClient
from hypr.guest.spec import GuestNic, GuestSpec, WorkloadSpec, kernel_args, spec_cpio
from hypr.guest.wire import AgentDisconnected
from hypr.vmm.adapter import Accel, UserNic, VmConfig, VmHandle, VmmAdapter

BuildNetwork = Literal["none", "default"]
# QEMU's user-mode network: the guest's address, its gateway and DNS, and where the build
# proxy appears to the guest.
GUEST = IPv4Interface("10.0.2.15/24")
GATEWAY = IPv4Address("10.0.2.2")
DNS = "10.0.2.3"
PROXY = ("10.0.2.100", 3128)
PROXY_URL = f"http://{PROXY[0]}:{PROXY[1]}"
HOSTNAME = "buildkitsandbox"  # what a Docker build step sees
UPPER = "/mnt/rw/upper"
BOOT_TIMEOUT = 120.0
# Run in the agent's initramfs after a step's layer was read: nothing of the step runs any
# more (capture killed it). The root's tree is detached, the upper directory becomes the
# top lower layer (`$1` numbers it), and the root is mounted again as the agent's boot
# does it (kestrel/boot.c); devtmpfs is one instance, its links are still there.
RESTACK = """
set -e
root=/newroot
lower=$(sed -n 's|^overlay /newroot overlay .*lowerdir=\\([^,]*\\).*|\\1|p' /proc/mounts)
umount -l $root
mv /mnt/rw/upper /mnt/rw/step$1
rm -rf /mnt/rw/work
mkdir /mnt/rw/upper /mnt/rw/work
dirs=upperdir=/mnt/rw/upper,workdir=/mnt/rw/work
mount -t overlay -o lowerdir=/mnt/rw/step$1:$lower,$dirs,redirect_dir=off,metacopy=off overlay $root
mount -t proc -o nosuid,nodev,noexec proc $root/proc
mount -t sysfs -o nosuid,nodev,noexec sysfs $root/sys
mount -t devtmpfs -o nosuid,mode=0755 devtmpfs $root/dev
mkdir -p $root/dev/pts $root/dev/shm
mount -t devpts -o nosuid,noexec,newinstance,ptmxmode=0666,mode=0620,gid=5 devpts $root/dev/pts
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs $root/dev/shm
"""


@dataclass(frozen=True)
class BuildMachine:
    """What booting a build VM takes from the daemon."""

    adapter: VmmAdapter
    kernel: Path
    initrd: Path
    accel: Accel
    runtime_root: Path  # one directory per build VM below it
    proxy_command: str | None  # run by QEMU per guest connection to PROXY
    proxy_url: str | None  # the same proxy for the host's own fetches (ADD of a URL)
    memory_mib: int = 2048  # the step's changes live in the guest's RAM (tmpfs) until read
    vcpus: int = 2


class StepFailed(Exception):
    """The step's command exited non-zero."""

    def __init__(self, code: int) -> None:
        super().__init__(f"exit code {code}")
        self.code = code


class BuildVm:
    """`async with BuildVm(machine, layers, network) as vm: await vm.run(...)`; the VM and
    its files are gone when the block ends, however it ends."""

    def __init__(
        self,
        machine: BuildMachine,
        layers: Sequence[Path],
        network: BuildNetwork,
        diff_ids: Sequence[str] = (),
    ) -> None:
        self.machine = machine
        self.layers = list(layers)
        self.network = network
        self.diff_ids = list(diff_ids)  # the layers its root is made of, restacks included
        # Under the daemon's VM runtime root, which a restart sweeps: a build VM that a
        # killed hyprd left is an unknown hypervisor there, killed and removed.
        self.id = "build-" + secrets.token_hex(4)  # as short as a VM's: socket paths
        self.runtime_dir = machine.runtime_root / self.id
        self._handle: VmHandle | None = None
        self._agent: AgentClient | None = None

    async def __aenter__(self) -> BuildVm:
        try:
            await self._boot()
        except BaseException:
            await self._destroy()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._destroy()

    @property
    def proxy_env(self) -> list[str]:
        """The step's HTTP(S)_PROXY variables, when it reaches the network through it."""
        if self.network != "none" or self.machine.proxy_command is None:
            return []
        return [f"{name}={PROXY_URL}" for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy",
                                                   "https_proxy")]  # fmt: skip

    async def run(
        self,
        argv: Sequence[str],
        env: Sequence[str],
        workdir: str,
        user: str | None,
        output: Callable[[bytes], None],
    ) -> None:
        """Run one step's command in the image root; its output goes to `output` as it
        comes. Raises StepFailed with the exit code when it fails."""
        agent = self._live_agent()
        session = await agent.open_exec(
            list(argv), [*self.proxy_env, *env], workdir, False, user or "0"
        )
        async for _, data in session:
            output(data)
        code = await session.wait()
        if code != 0:
            raise StepFailed(code)

    async def put_file(self, path: str, data: bytes) -> None:
        """An executable file outside the layer (a heredoc script under /dev, a tmpfs)."""
        script = 'mkdir -p "$(dirname "$1")" && cat > "$1" && chmod 755 "$1"'
        target = "/newroot/" + path.lstrip("/")
        result = await self._live_agent().exec(
            ["busybox", "sh", "-c", script, "sh", target], stdin=data, agent_root=True
        )
        if result.exit_code != 0:
            raise RuntimeError(f"cannot write {path}: {result.stderr.decode()[-200:]}")

    async def capture(self, out: Path) -> str:
        """Write what the steps changed as an OCI layer tar at `out`; return its diff_id.
        Whatever the step left running is killed first, as a container's end would."""
        agent = self._live_agent()
        await agent.exec(["busybox", "kill", "-9", "-1"], agent_root=True)
        opaque = await agent.exec(["/init", "--opaque-dirs", UPPER], agent_root=True)
        if opaque.exit_code != 0:
            raise RuntimeError(f"cannot list the layer's opaque directories: {opaque.stderr!r}")
        raw = out.with_name(out.name + ".upper")
        try:
            session = await agent.open_exec(
                ["busybox", "tar", "-c", "-f", "-", "-C", UPPER, "."], agent_root=True
            )
            errors = bytearray()
            with raw.open("wb") as sink:
                async for stream, data in session:
                    if stream == "stdout":
                        await asyncio.to_thread(sink.write, data)
                    else:
                        errors += data
            if await session.wait() != 0:
                raise RuntimeError(f"cannot read the step's layer: {errors.decode()[-300:]}")
            dirs = [line for line in opaque.stdout.decode().splitlines() if line]
            return await asyncio.to_thread(upper_to_oci, raw, out, dirs)
        finally:
            raw.unlink(missing_ok=True)

    async def restack(self, diff_id: str) -> None:
        """Make what the last step changed a lower layer of the root and start an empty
        upper directory, so the next step's layer holds only its own changes: a stage's
        RUN steps share one VM instead of booting one each."""
        argv = ["busybox", "sh", "-c", RESTACK, "sh", str(len(self.diff_ids))]
        result = await self._live_agent().exec(argv, agent_root=True)
        if result.exit_code != 0:
            raise RuntimeError(f"cannot restack the build VM's root: {result.stderr.decode()}")
        self.diff_ids.append(diff_id)

    # ----------------------------------------------------------------------- internals

    def _live_agent(self) -> AgentClient:
        if self._agent is None or not self._agent.connected:
            raise AgentDisconnected("the build VM stopped")
        return self._agent

    async def _boot(self) -> None:
        machine = self.machine
        mac = "52:54:00:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))
        forwards = {PROXY: machine.proxy_command} if machine.proxy_command else {}
        nic = UserNic(mac, isolated=self.network == "none", forwards=forwards)
        guest = GuestSpec(
            hostname=HOSTNAME,
            nics=[GuestNic(mac, GUEST, GATEWAY)],
            dns=[DNS] if self.network == "default" else [],
            workload=WorkloadSpec(argv=["true"]),
            layers=len(self.layers),
            build=True,
        )
        self.runtime_dir.mkdir(parents=True)
        config = VmConfig(
            vm_id=self.id,
            vcpus=machine.vcpus,
            memory_mib=machine.memory_mib,
            kernel=machine.kernel,
            initrd=machine.initrd,
            initrd_append=spec_cpio(guest.workload),
            cmdline=kernel_args(guest),
            layers=self.layers,
            nics=[],
            runtime_dir=self.runtime_dir,
            console_log=self.runtime_dir / "console.log",
            accel=machine.accel,
            user_nic=nic,
        )
        self._handle = await machine.adapter.create(config)
        async with asyncio.timeout(BOOT_TIMEOUT):
            self._agent = await AgentClient.connect(self._handle.agent_socket)
            exited = asyncio.create_task(machine.adapter.wait(self._handle))
            ready = asyncio.create_task(self._agent.wait_ready())
            await asyncio.wait({exited, ready}, return_when=asyncio.FIRST_COMPLETED)
            exited.cancel()
            if not ready.done() or ready.exception() is not None:
                ready.cancel()
                raise RuntimeError(f"the build VM did not boot: {self._console_tail()}")

    def _console_tail(self) -> str:
        with contextlib.suppress(OSError):
            lines = (self.runtime_dir / "console.log").read_text(errors="replace").splitlines()
            return " | ".join(lines[-3:]) or "no console output"
        return "no console output"

    async def _destroy(self) -> None:
        if self._agent is not None:
            with contextlib.suppress(Exception):
                await self._agent.close()
        if self._handle is not None:
            with contextlib.suppress(Exception):
                await self.machine.adapter.kill(self._handle)
            with contextlib.suppress(Exception):
                await self.machine.adapter.delete(self._handle)
        shutil.rmtree(self.runtime_dir, ignore_errors=True)
