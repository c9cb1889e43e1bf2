"""User data as the guest agent is told it: `ud.*` lines of /hypr/spec.

The agent looks for /usr/bin/cloud-init in the image root at boot. If it is there, it
writes the `ud.seed` files into /var/lib/cloud/seed/nocloud/ and leaves the rest to
cloud-init; if not, it applies the other lines itself, in a child chrooted into the image
root: `ud.user` (a passwd entry if missing, ~/.ssh/authorized_keys), `ud.file`, then runs
the `ud.boot` scripts before the workload and the `ud.once` ones beside it, and prints
every `ud.note`. Fields are tab-separated and each is percent-encoded on its own (see
spec.encode_value), so a file's content may hold any byte.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import yaml

from hypr.guest.cloudconfig import UserData, WriteFile
from hypr.guest.spec import GuestNic

SCRIPTS_DIR = "/var/lib/cloud/instance/scripts"
BOOT_SCRIPT = "/var/lib/cloud/instance/boothooks/bootcmd"
SEM_FILE = "/var/lib/cloud/instance/sem/config_scripts_user"


@dataclass(frozen=True)
class Instance:
    """What one boot of one VM adds to its user data."""

    instance_id: str  # the VM's id
    hostname: str
    nics: Sequence[GuestNic]  # as the agent configures them, user data's network applied
    dns: Sequence[str]
    first_done: str | None  # when the per-instance scripts ran; None: they run at this boot


def encode_bytes(data: bytes) -> str:
    """spec.encode_value for any bytes: '%', controls and non-ASCII as %XX."""
    return "".join(f"%{b:02X}" if b == 0x25 or b < 0x20 or b >= 0x7F else chr(b) for b in data)


def _line(kind: str, *fields: str | bytes) -> str:
    parts = (f if isinstance(f, bytes) else f.encode() for f in fields)
    return f"ud.{kind}=" + "\t".join(encode_bytes(p) for p in parts)


def userdata_lines(raw: str, data: UserData, instance: Instance, now: str) -> list[str]:
    """Every `ud.*` line for one boot; `now` is when the per-instance scripts start if this
    boot is the instance's first."""
    lines = [_line("seed", name, content) for name, content in nocloud_seed(raw, instance)]
    lines += [_line("note", note) for note in data.notes]
    for user in data.users:
        uid = "" if user.uid is None else str(user.uid)
        lines.append(_line("user", user.name, uid, user.home or "", user.shell or "",
                           user.gecos, "".join(k + "\n" for k in user.keys)))  # fmt: skip
    files = list(data.files)
    once = data.once()
    if once:  # cloud-init's semaphore: recorded before the scripts run, there ever after
        done = instance.first_done or now
        files.append(WriteFile(SEM_FILE, f"{done}\n".encode(), mode=0o644))
    lines += [_file_line(f) for f in files]
    if data.bootcmd is not None:
        lines.append(_line("boot", BOOT_SCRIPT, data.bootcmd))
    if instance.first_done is None:
        lines += [_line("once", f"{SCRIPTS_DIR}/{name}", text) for name, text in once]
    return lines


def _file_line(f: WriteFile) -> str:
    return _line("file", f.path, f.owner, f"{f.mode:o}", "1" if f.append else "0", f.content)


def nocloud_seed(raw: str, instance: Instance) -> list[tuple[str, str]]:
    """cloud-init's NoCloud files: meta-data, user-data (as given), network-config (the
    VM's NICs by MAC, as the agent configured them)."""
    meta = {"instance-id": instance.instance_id, "local-hostname": instance.hostname}
    ethernets = {}
    for index, nic in enumerate(instance.nics):
        entry: dict[str, object] = {"match": {"macaddress": nic.mac}, "set-name": f"eth{index}"}
        if nic.address is None:
            entry["dhcp4"] = True
        else:
            entry["addresses"] = [nic.address.with_prefixlen]
            if nic.gateway is not None:
                entry["gateway4"] = str(nic.gateway)
            if instance.dns:
                entry["nameservers"] = {"addresses": list(instance.dns)}
        if nic.mtu != 1500:
            entry["mtu"] = nic.mtu
        ethernets[f"eth{index}"] = entry
    network = {"version": 2, "ethernets": ethernets}
    return [
        ("meta-data", yaml.safe_dump(meta, sort_keys=False)),
        ("user-data", raw),
        ("network-config", yaml.safe_dump(network, sort_keys=False)),
    ]
