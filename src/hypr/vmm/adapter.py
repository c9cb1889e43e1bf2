"""The VMM adapter contract: what the daemon needs from a hypervisor, and nothing more.

Like Firecracker's API, it is tiny and explicit. The daemon owns TAP devices, addresses and
the guest agent connection; an adapter only turns a `VmConfig` into a running process and
back. QEMU is the adapter that runs here; Firecracker or cloud-hypervisor would implement the
same protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

Accel = Literal["kvm", "tcg"]


@dataclass(frozen=True)
class NicConfig:
    """One guest NIC, backed by a host TAP device that the daemon already created."""

    tap: str
    mac: str


@dataclass(frozen=True)
class UserNic:
    """A NIC on QEMU's user-mode network (slirp), no TAP: a build step's. With `isolated`
    the guest reaches nothing at all but `forwards`; without, it has NAT through the host's
    own connections."""

    mac: str
    isolated: bool = True
    # Guest-side (address, port) -> a shell command QEMU runs per connection, its stdin and
    # stdout being the connection (how an isolated guest reaches the build proxy).
    forwards: dict[tuple[str, int], str] = field(default_factory=dict)


# The virtio-fs tag under which a VM's shared folders appear, each as an entry of its name.
SHARES_TAG = "hypr"


@dataclass(frozen=True)
class SharedDir:
    """A host directory (or file) that the guest sees as `/<name>` in the filesystem with
    tag SHARES_TAG; writes go straight to the host, other VMs sharing it see them."""

    name: str
    source: Path
    read_only: bool = False


@dataclass(frozen=True)
class VmConfig:
    """Everything an adapter needs to boot one VM, in the hypervisor's own terms: what the
    guest makes of its command line and initrd is the caller's business."""

    vm_id: str
    vcpus: int
    memory_mib: int
    kernel: Path
    initrd: Path
    # Appended to `initrd` in the per-VM copy (the kernel unpacks concatenated cpio
    # archives in order, so this can add or replace files).
    initrd_append: bytes
    # Kernel arguments for the guest; the adapter adds its own (console, TSC under TCG).
    cmdline: str
    # The image's squashfs layers, bottom first: each a read-only block device of its own,
    # so VMs of one image (or of images sharing a base) share the files on the host.
    layers: list[Path]
    nics: list[NicConfig]
    runtime_dir: Path  # per-VM directory for sockets and the per-VM initrd
    console_log: Path
    accel: Accel = "tcg"
    shares: list[SharedDir] = field(default_factory=list)
    user_nic: UserNic | None = None  # after `nics`, as the guest's last ethN
    # Start from this saved state (a snapshot) instead of booting: the devices must be the
    # ones the state was saved with (same layers, NICs, MACs).
    incoming: Path | None = None


@dataclass(frozen=True)
class CommandSpec:
    """A hypervisor invocation: argv plus files that must exist before it runs."""

    argv: list[str]
    files: dict[Path, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class VmHandle:
    """What identifies a running VM's hypervisor process; persisted so hyprd can adopt it."""

    vm_id: str
    pid: int
    runtime_dir: Path
    agent_socket: Path  # Unix socket of the guest agent's virtio-serial port


class VmmAdapter(Protocol):
    """The operations the daemon performs on a hypervisor."""

    name: str

    def build_command(self, config: VmConfig) -> CommandSpec:
        """Return the exact command (and files) that would boot `config`."""
        ...

    async def create(self, config: VmConfig) -> VmHandle:
        """Prepare and spawn the hypervisor process; returns once it runs."""
        ...

    async def stop(self, handle: VmHandle, grace: float) -> None:
        """Wait up to `grace` s for the process to exit (the guest was asked to power off
        through its agent), then kill it."""
        ...

    async def kill(self, handle: VmHandle) -> None:
        """Kill the hypervisor process now and reap it."""
        ...

    async def wait(self, handle: VmHandle) -> None:
        """Return when the hypervisor process has exited (works for adopted processes)."""
        ...

    def is_alive(self, handle: VmHandle) -> bool:
        """True if `handle.pid` is still this VM's hypervisor (used to adopt after restart)."""
        ...

    def exit_status(self, handle: VmHandle) -> int | None:
        """The exited process's status (-N: killed by signal N), if the adapter saw it."""
        ...

    async def save_state(self, handle: VmHandle, target: Path, resume: bool) -> int:
        """Pause the VM, write its whole state (RAM and devices) to `target`, and resume it
        if `resume` (else it stays paused until killed); the file's size."""
        ...

    def discover(self, root: Path) -> dict[str, int]:
        """Pids of the live hypervisors whose runtime dirs are under `root`, by VM id."""
        ...

    async def stop_orphans(self, root: Path, keep: set[Path]) -> None:
        """Stop the helper processes (file servers) under `root` that belong to no VM whose
        runtime dir is in `keep`: after a daemon restart nothing may outlive its VM."""
        ...

    async def delete(self, handle: VmHandle) -> None:
        """Remove the VM's runtime files; the process must be gone."""
        ...
