"""QEMU `microvm` adapter: virtio-mmio devices, no firmware, no PCI.

Each image layer is a read-only virtio-blk disk, each NIC a virtio-net device on a TAP the daemon
created, and the agent channel a virtio-serial port on a Unix socket that QEMU serves
(server=on,wait=off) so the daemon can connect, leave and come back at any time. QEMU runs in
its own session so it outlives hyprd; `wait()` uses a pidfd, so it works for a VM adopted
after a daemon restart as well as for our own children.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from hypr import faults
from hypr.errors import InvalidArgument
from hypr.process import command_lines, wait_exit
from hypr.vmm import qmp, virtiofs
from hypr.vmm.adapter import SHARES_TAG, Accel, CommandSpec, UserNic, VmConfig, VmHandle
from hypr.vmm.cmdline import kernel_cmdline
from hypr.vmm.tsc import host_tsc_khz

log = logging.getLogger(__name__)

AGENT_SOCKET = "agent.sock"
INITRD = "initrd.cpio"
QEMU_STDERR = "qemu.stderr"
STOP_TERM_GRACE = 3.0
RUN_SHARES = faults.register("run.shares", "run: virtiofsd started, QEMU not spawned")
# microvm's virtio-mmio transports (measured: a 25th virtio device fails to attach).
MMIO_TRANSPORTS = 24


def check_devices(layers: int, nics: int, shares: bool = False) -> None:
    """Refuse a VM whose layers, NICs, agent port and shared folders need more virtio
    devices than microvm has: one clear line instead of QEMU's error (the image store could
    flatten such an image; refusing keeps every layer shared). The daemon calls it at
    create, too. All shared folders together take one device."""
    if layers < 1:
        raise InvalidArgument("a VM needs at least one image layer")
    needed = layers + nics + 1 + int(shares)
    if needed > MMIO_TRANSPORTS:
        folders = " and shared folders" if shares else ""
        raise InvalidArgument(
            f"the image has {layers} layers and the VM {nics} NICs{folders}: "
            f"that needs {needed} virtio devices, microvm has {MMIO_TRANSPORTS}"
        )


def _machine(accel: Accel, memory_backend: str | None = None) -> list[str]:
    # PIT/PIC/RTC keep the kernel's timer calibration finite under TCG; harmless with KVM.
    machine = f"microvm,accel={accel},pit=on,pic=on,rtc=on"
    if memory_backend is not None:
        machine += f",memory-backend={memory_backend}"
    argv = ["-M", machine]
    if accel == "kvm":
        argv += ["-cpu", "host"]
    return argv


def _shares_args(config: VmConfig) -> tuple[list[str], list[str]]:
    """Machine and device arguments for the shared folders: vhost-user-fs needs the guest's
    RAM in shared memory, and virtiofsd refuses microvm's default legacy virtio-mmio."""
    if not config.shares:
        return [], []
    memory = [
        "-object", f"memory-backend-memfd,id=mem,size={config.memory_mib}M,share=on",
        "-global", "virtio-mmio.force-legacy=false",
    ]  # fmt: skip
    device = [
        "-chardev", f"socket,id=shares,path={virtiofs.socket_path(config.runtime_dir)}",
        "-device", f"vhost-user-fs-device,chardev=shares,tag={SHARES_TAG}",
    ]  # fmt: skip
    return memory, device


def _user_nic_args(nic: UserNic, index: int) -> list[str]:
    options = [f"user,id=net{index}", f"restrict={'on' if nic.isolated else 'off'}"]
    for (address, port), command in nic.forwards.items():
        if "," in command:
            raise ValueError(f"a guest forward command cannot contain a comma: {command!r}")
        options.append(f"guestfwd=tcp:{address}:{port}-cmd:{command}")
    return [
        "-netdev", ",".join(options),
        "-device", f"virtio-net-device,netdev=net{index},mac={nic.mac}",
    ]  # fmt: skip


class QemuAdapter:
    """Boots VMs with `qemu-system-x86_64 -M microvm`."""

    name = "qemu"

    def __init__(
        self, binary: str = "qemu-system-x86_64", virtiofsd: str = virtiofs.VIRTIOFSD
    ) -> None:
        self.binary = binary
        self.file_servers = virtiofs.VirtiofsDaemons(virtiofsd)
        self._children: set[int] = set()  # pids we spawned and must reap
        self._statuses: dict[int, int] = {}  # exit codes of reaped children (-N: signal N)

    def build_command(self, config: VmConfig) -> CommandSpec:
        """The argv and the per-VM initrd (the shared one + `initrd_append`)."""
        nic_count = len(config.nics) + (config.user_nic is not None)
        check_devices(len(config.layers), nic_count, bool(config.shares))
        run = config.runtime_dir
        initrd = run / INITRD
        memory, shares = _shares_args(config)
        argv = [
            self.binary,
            # Named vCPU threads tell `create` that QEMU got through its setup.
            "-name", f"hypr-{config.vm_id},debug-threads=on",
            *_machine(config.accel, "mem" if memory else None),
            *memory,
            "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
            "-smp", str(config.vcpus),
            "-m", str(config.memory_mib),
            "-kernel", str(config.kernel),
            "-initrd", str(initrd),
            "-append", kernel_cmdline(config.accel, config.cmdline, host_tsc_khz()),
            "-chardev", f"file,id=console,path={config.console_log},append=on",
            "-serial", "chardev:console",
        ]  # fmt: skip
        for index, layer in enumerate(config.layers):
            # readonly=on takes a shared lock only, so any number of VMs open one file; the
            # serial is how the agent tells the layers apart, whatever order they probe in.
            argv += [
                "-drive", f"id=layer{index},file={layer},format=raw,if=none,readonly=on",
                "-device", f"virtio-blk-device,drive=layer{index},serial=layer{index}",
            ]  # fmt: skip
        for index, nic in enumerate(config.nics):
            argv += [
                "-netdev", f"tap,id=net{index},ifname={nic.tap},script=no,downscript=no",
                "-device", f"virtio-net-device,netdev=net{index},mac={nic.mac}",
            ]  # fmt: skip
        if config.user_nic is not None:
            argv += _user_nic_args(config.user_nic, len(config.nics))
        argv += [
            # Two ports (0 is reserved for a console): with the default 31 the guest sets up
            # 64 virtqueues when virtio_console probes.
            "-device", "virtio-serial-device,max_ports=2",
            "-chardev", f"socket,id=agent,path={run / AGENT_SOCKET},server=on,wait=off",
            "-device", "virtserialport,chardev=agent,name=hypr.agent",
            *shares,
            "-qmp", f"unix:{run / qmp.SOCKET},server=on,wait=off",
        ]  # fmt: skip
        if config.incoming is not None:
            argv += ["-incoming", f"exec:cat {config.incoming}"]
        return CommandSpec(
            argv=argv, files={initrd: config.initrd.read_bytes() + config.initrd_append}
        )

    async def create(self, config: VmConfig) -> VmHandle:
        """Write the per-VM files, spawn QEMU, return once it runs: the agent socket exists
        and the vCPU threads too (created after the kernel is loaded and the backends are
        open, so most configuration errors surface here)."""
        spec = self.build_command(config)
        config.runtime_dir.mkdir(parents=True, exist_ok=True)
        sock = config.runtime_dir / AGENT_SOCKET
        sock.unlink(missing_ok=True)
        for path, data in spec.files.items():
            path.write_bytes(data)
        config.console_log.parent.mkdir(parents=True, exist_ok=True)
        if config.shares:
            await self.file_servers.start(config.runtime_dir, config.shares)
            faults.point(RUN_SHARES)
        try:
            handle = await self._spawn(config, spec)
        except BaseException:
            await self.file_servers.stop(config.runtime_dir)
            raise
        if config.incoming is not None:
            try:
                await qmp.resume_incoming(config.runtime_dir / qmp.SOCKET)
            except BaseException as exc:
                await self.kill(handle)
                raise RuntimeError(f"VM {config.vm_id} could not resume: {exc}") from exc
        return handle

    async def _spawn(self, config: VmConfig, spec: CommandSpec) -> VmHandle:
        sock = config.runtime_dir / AGENT_SOCKET
        stderr_path = config.runtime_dir / QEMU_STDERR
        # posix_spawn returns once the child has exec'd (vfork): no waiting on QEMU. In a
        # thread, a cancel at this await would lose the pid of a running, setsid QEMU.
        pid = os.posix_spawnp(  # noqa: ASYNC221
            spec.argv[0],
            spec.argv,
            dict(os.environ),
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                (os.POSIX_SPAWN_OPEN, 2, str(stderr_path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                 0o644),
            ],
            setsid=True,  # QEMU must survive hyprd's restarts and its terminal's signals
        )  # fmt: skip
        self._children.add(pid)
        handle = VmHandle(
            vm_id=config.vm_id, pid=pid, runtime_dir=config.runtime_dir, agent_socket=sock
        )
        deadline = time.monotonic() + 10.0
        while not (sock.exists() and _has_vcpu_thread(pid)):
            if self._reap(pid) or time.monotonic() > deadline:
                await self.kill(handle)
                detail = stderr_path.read_text(errors="replace").strip() or "no output"
                raise RuntimeError(f"QEMU for VM {config.vm_id} failed to start: {detail}")
            await asyncio.sleep(0.01)
        return handle

    async def stop(self, handle: VmHandle, grace: float) -> None:
        """Wait `grace` s for the guest's own power-off, then SIGTERM, then SIGKILL."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wait(handle), grace)
            return
        log.info("VM %s did not power off within %.1fs, sending SIGTERM", handle.vm_id, grace)
        self._signal(handle, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wait(handle), STOP_TERM_GRACE)
            return
        log.warning("VM %s ignored SIGTERM, killing it", handle.vm_id)
        await self.kill(handle)

    async def kill(self, handle: VmHandle) -> None:
        """SIGKILL QEMU and wait until it is gone."""
        self._signal(handle, signal.SIGKILL)
        await self.wait(handle)

    async def wait(self, handle: VmHandle) -> None:
        """Return once QEMU has exited (reaping it when it is our child) and its file
        server with it: virtiofsd never outlives what it serves."""
        await wait_exit(handle.pid)
        self._reap(handle.pid)
        await self.file_servers.stop(handle.runtime_dir)

    def is_alive(self, handle: VmHandle) -> bool:
        """True if handle.pid is a live process whose command line names this VM."""
        try:
            cmdline = Path(f"/proc/{handle.pid}/cmdline").read_bytes()
        except OSError:
            return False
        name = f"hypr-{handle.vm_id}".encode()
        return any(a == name or a.startswith(name + b",") for a in cmdline.split(b"\0"))

    def exit_status(self, handle: VmHandle) -> int | None:
        """How the process ended, as `subprocess` says it (-N: killed by signal N); None if
        it was not our child (adopted after a restart) or is still running."""
        return self._statuses.pop(handle.pid, None)

    async def save_state(self, handle: VmHandle, target: Path, resume: bool) -> int:
        if not (handle.runtime_dir / qmp.SOCKET).exists():
            raise RuntimeError(f"VM {handle.vm_id} has no monitor (started by an older hyprd)")
        try:
            return await qmp.save_state(handle.runtime_dir / qmp.SOCKET, target, resume)
        except (qmp.QmpError, OSError) as exc:
            raise RuntimeError(str(exc)) from exc

    def discover(self, root: Path) -> dict[str, int]:
        """Every live QEMU whose runtime dir is under `root`, by VM id, whatever the
        database says (a daemon killed between spawn and recording the pid forgot it)."""
        marker = f"path={root}/".encode()
        found: dict[str, int] = {}
        for pid, argv in command_lines():
            if not any(marker in arg for arg in argv) or b"-name" not in argv:
                continue
            name = argv[argv.index(b"-name") + 1].decode(errors="replace")
            if name.startswith("hypr-"):
                found[name.removeprefix("hypr-").split(",")[0]] = pid
        return found

    async def stop_orphans(self, root: Path, keep: set[Path]) -> None:
        await self.file_servers.stop_orphans(root, {path.name for path in keep})

    async def delete(self, handle: VmHandle) -> None:
        """Remove the files `create` put into the runtime dir (and the dir, if now empty)."""
        if self.is_alive(handle):
            raise RuntimeError(f"VM {handle.vm_id} is still running")
        for name in (AGENT_SOCKET, INITRD, QEMU_STDERR, qmp.SOCKET, virtiofs.SOCKET, virtiofs.LOG):
            (handle.runtime_dir / name).unlink(missing_ok=True)
        shutil.rmtree(handle.runtime_dir / virtiofs.SHARES_DIR, ignore_errors=True)
        with contextlib.suppress(OSError):
            handle.runtime_dir.rmdir()

    def _signal(self, handle: VmHandle, sig: signal.Signals) -> None:
        if not self.is_alive(handle):
            return  # gone, or the pid now belongs to someone else
        with contextlib.suppress(ProcessLookupError):
            os.kill(handle.pid, sig)

    def _reap(self, pid: int) -> bool:
        """If `pid` is our child and has exited, reap it. True once it is known to be gone."""
        if pid not in self._children:
            return not Path(f"/proc/{pid}").exists()
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        else:
            if done:
                self._statuses[pid] = os.waitstatus_to_exitcode(status)
        if done:
            self._children.discard(pid)
            return True
        return False


def _has_vcpu_thread(pid: int) -> bool:
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return False
    for task in tasks:
        with contextlib.suppress(OSError):
            if (task / "comm").read_text().startswith("CPU "):
                return True
    return False


@dataclass(frozen=True)
class BootProbe:
    """A boot that proves an accelerator works: kernel arguments that make the guest print
    `marker` on the serial console and power off at once."""

    kernel: Path
    initrd: Path
    cmdline: str
    marker: bytes


async def probe_boot(
    accel: Accel, probe: BootProbe, binary: str = "qemu-system-x86_64", budget: float = 5.0
) -> tuple[float | None, str]:
    """Boot `probe` under `accel`. Returns (seconds taken, "") on success, or (None, why
    not). Overrunning `budget` seconds is one of the answers, not an error: no deadline."""
    cmdline = kernel_cmdline(accel, probe.cmdline, host_tsc_khz())
    argv = [
        binary, *_machine(accel),
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-m", "128", "-kernel", str(probe.kernel), "-initrd", str(probe.initrd),
        "-append", cmdline, "-serial", "stdio",
    ]  # fmt: skip
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(budget):
            out, err = await proc.communicate()
    except TimeoutError:
        return None, f"no power-off within {budget:.1f}s"
    finally:
        if proc.returncode is None:  # the hung probe must not outlive us
            proc.kill()
            await proc.wait()
    if probe.marker in out:
        return time.monotonic() - started, ""
    lines = err.decode(errors="replace").strip().splitlines()
    return None, lines[-1] if lines else "the agent's marker never appeared"


async def probe_accel(
    probe: BootProbe, binary: str = "qemu-system-x86_64", budget: float = 5.0
) -> Accel:
    """ "kvm" if /dev/kvm exists and a probe boot under KVM reaches the agent within `budget`
    seconds; "tcg" otherwise (a nested KVM may accept the VM yet never boot it)."""
    if not await asyncio.to_thread(os.path.exists, "/dev/kvm"):
        log.info("accel: no /dev/kvm, using tcg")
        return "tcg"
    took, why = await probe_boot("kvm", probe, binary, budget)
    if took is None:
        log.info("accel: KVM probe boot failed (%s), using tcg", why)
        return "tcg"
    log.info("accel: KVM probe booted in %.2fs, using kvm", took)
    return "kvm"


async def resolve_accel(
    setting: str, probe: BootProbe, binary: str = "qemu-system-x86_64"
) -> Accel:
    """Turn the `auto|kvm|tcg` setting into the accelerator to use (probing for auto)."""
    if setting == "kvm":
        return "kvm"
    if setting == "tcg":
        return "tcg"
    if setting == "auto":
        return await probe_accel(probe, binary)
    raise ValueError(f"accel must be auto, kvm or tcg, not {setting!r}")
