"""What the host tells the guest agent at boot: kernel arguments and /hypr/spec.

Network, DNS and hostname go on the kernel command line (the agent reads /proc/cmdline before
anything else is mounted). The workload goes into /hypr/spec, shipped as a tiny cpio archive
appended to the shared initramfs: argv and env may be long and contain any byte, which the
2 KiB, space-separated command line cannot carry. These types are the agent's; the caller
hands the rendered pieces to a hypervisor adapter.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface
from typing import Literal

from hypr.checks import check_user, signal_number
from hypr.guest.cpio import CpioEntry, newc_archive

RestartPolicy = Literal["no", "always", "on-failure"]

# A cmdline word must not contain what the kernel or the agent splits on.
_CMDLINE_SAFE = re.compile(r"^[A-Za-z0-9._:/-]+$")
# With this argument the agent prints PROBE_MARKER and powers off at once: a boot that
# reaches it proves the accelerator can run a guest.
PROBE_ARGS = "hypr.probe=1"
PROBE_MARKER = b"kestrel: probe ok"


@dataclass(frozen=True)
class GuestNic:
    """One NIC as the agent configures it, found by its MAC."""

    mac: str
    # None means the guest asks for its address by DHCP.
    address: IPv4Interface | None
    gateway: IPv4Address | None
    mtu: int = 1500


@dataclass(frozen=True)
class WorkloadSpec:
    """What the guest agent runs as the VM's main process."""

    argv: list[str]
    env: list[str] = field(default_factory=list)  # "KEY=VALUE"
    workdir: str = "/"
    restart: RestartPolicy = "no"
    max_restarts: int = 0  # for on-failure; 0 means unlimited
    # Docker's `-u`: uid, uid:gid, name or name:group, resolved in the image's /etc/passwd
    # and /etc/group by the agent; exec sessions run as this user too. None: root.
    user: str | None = None
    # Sent to the workload on shutdown: a name (SIGQUIT, QUIT) or number. None: SIGTERM.
    stop_signal: str | None = None
    # Extra /etc/hosts entries (Docker's --add-host), (address, name), added to the agent's.
    hosts: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class GuestMount:
    """One mount the agent makes in the image root before the workload starts: an entry of
    the shared-folder filesystem (a volume or a bind mount), or a tmpfs."""

    target: str  # absolute path in the image root, resolved inside it by the agent
    share: str | None = None  # the entry's name in the shared folders; None: a tmpfs
    read_only: bool = False
    copy_up: bool = False  # fill the share from the image's files at target if it is empty
    tmpfs_size: int = 0  # bytes; 0: the kernel's default
    tmpfs_mode: int = 0o1777


@dataclass(frozen=True)
class GuestSpec:
    """Everything the agent is told at boot."""

    hostname: str
    nics: list[GuestNic]
    dns: list[str]
    workload: WorkloadSpec
    layers: int = 1  # image layers attached as block devices layer0 (bottom) .. layerN-1
    # The virtio-fs tag of the shared folders, if the VM has any.
    shares_tag: str | None = None
    # A build VM: no workload, only the steps the host runs with exec; its overlay keeps
    # the upper directory plain (no redirects), so a step's changes read as a layer.
    build: bool = False


def encode_value(value: str) -> str:
    """Percent-encode '%', and every byte < 0x20 or >= 0x7f of the UTF-8 form."""
    out = []
    for byte in value.encode():
        if byte == 0x25 or byte < 0x20 or byte >= 0x7F:
            out.append(f"%{byte:02X}")
        else:
            out.append(chr(byte))
    return "".join(out)


def _check_string(what: str, value: str) -> None:
    if "\0" in value:
        raise ValueError(f"{what} must not contain NUL: {value!r}")


def workload_spec_bytes(spec: WorkloadSpec) -> bytes:
    """Render /hypr/spec: one `key=value` line per item, values percent-encoded."""
    lines: list[str] = []
    for arg in spec.argv:
        _check_string("argv", arg)
        lines.append(f"arg={encode_value(arg)}")
    for kv in spec.env:
        _check_string("env", kv)
        if "=" not in kv or kv.startswith("="):
            raise ValueError(f"env entries must be KEY=VALUE: {kv!r}")
        lines.append(f"env={encode_value(kv)}")
    _check_string("workdir", spec.workdir)
    lines.append(f"workdir={encode_value(spec.workdir or '/')}")
    lines.append(f"restart={spec.restart}")
    if spec.max_restarts < 0:
        raise ValueError("max_restarts must be >= 0")
    lines.append(f"max_restarts={spec.max_restarts}")
    if spec.user is not None:
        lines.append(f"user={check_user(spec.user)}")
    if spec.stop_signal is not None:
        lines.append(f"stop_signal={signal_number(spec.stop_signal)}")
    for address, name in spec.hosts:
        _check_string("host", address + name)
        if not address or not name or any(c.isspace() for c in address + name):
            raise ValueError(f"invalid hosts entry {address!r} {name!r}")
        lines.append(f"host={encode_value(address + chr(9) + name)}")
    return ("\n".join(lines) + "\n").encode("ascii")


def mount_line(mount: GuestMount) -> str:
    """A /hypr/spec `mount=` line: kind, source, target and options, each field encoded on
    its own and joined by tabs (an encoded field holds no tab, so any target is safe)."""
    if not mount.target.startswith("/"):
        raise ValueError(f"a mount target must be absolute: {mount.target!r}")
    _check_string("mount target", mount.target)
    options = ["ro"] if mount.read_only else []
    if mount.share is not None:
        options += ["copy"] if mount.copy_up else []
        fields = ["share", mount.share, mount.target]
    else:
        options += [f"size={int(mount.tmpfs_size)}"] if mount.tmpfs_size else []
        options.append(f"mode={mount.tmpfs_mode:o}")
        fields = ["tmpfs", "", mount.target]
    return "mount=" + "\t".join(encode_value(f) for f in [*fields, ",".join(options)])


def spec_cpio(
    spec: WorkloadSpec, mounts: Sequence[GuestMount] = (), userdata: Sequence[str] = ()
) -> bytes:
    """A newc archive holding /hypr/spec, meant to be appended to the shared initramfs;
    `userdata` are the ready-made `ud.*` lines of guest/userdata.py."""
    text = workload_spec_bytes(spec) + "".join(mount_line(m) + "\n" for m in mounts).encode()
    text += "".join(line + "\n" for line in userdata).encode("ascii")
    entries = [
        CpioEntry.directory("hypr"),
        CpioEntry.file("hypr/spec", text, 0o600),
    ]
    # Inode numbers far from the main archive's, so the two never look like hard links.
    return newc_archive(entries, first_ino=0x7FFF0000)


def _safe(what: str, value: str) -> str:
    if not _CMDLINE_SAFE.match(value):
        raise ValueError(f"{what} cannot go on the kernel command line: {value!r}")
    return value


def kernel_args(spec: GuestSpec) -> str:
    """The agent's kernel arguments (hypr.*) for `spec`."""
    words = []
    for index, nic in enumerate(spec.nics):
        addr = "dhcp" if nic.address is None else nic.address.with_prefixlen
        gateway = "" if nic.gateway is None else str(nic.gateway)
        mac = _safe("mac", nic.mac.lower())
        words.append(f"hypr.net=eth{index},{addr},{gateway},{int(nic.mtu)},{mac}")
    if spec.dns:
        words.append("hypr.dns=" + ",".join(_safe("dns server", d) for d in spec.dns))
    words.append("hypr.hostname=" + _safe("hostname", spec.hostname))
    if spec.layers < 1:
        raise ValueError("a guest needs at least one image layer")
    words.append(f"hypr.layers={int(spec.layers)}")
    if spec.shares_tag is not None:
        words.append("hypr.shares=" + _safe("shared folder tag", spec.shares_tag))
    if spec.build:
        words.append("hypr.build=1")
    return " ".join(words)
