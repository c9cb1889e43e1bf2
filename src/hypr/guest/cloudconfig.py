"""cloud-init user data, read and checked on the host.

An image with cloud-init gets the user data as it was given (in a NoCloud seed); for an
image without it the guest agent applies the common subset, which this module turns into
plain values: hostname, files, users and their SSH keys, shell scripts for every boot
(`bootcmd`) and for the first boot only (`runcmd`, a `#!` script), network overrides.
Anything else is kept as a note, so that it is logged and never silently dropped.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import re
import shlex
import zlib
from dataclasses import dataclass, field
from typing import Any

import yaml

from hypr.guest.cloudtypes import Notes, UserDataError, expect, expect_strings
from hypr.guest.netconfig import NetworkConfig, parse_network

MAX_USER_DATA = 1 << 20  # bytes; the seed travels in the VM's initramfs
# A passwd field may hold neither ':' nor a line break; a user name is the portable set.
_USER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
_FILE_KEYS = frozenset({"path", "content", "encoding", "permissions", "owner", "append", "defer"})
_USER_KEYS = frozenset(
    {"name", "gecos", "homedir", "shell", "uid", "ssh_authorized_keys", "lock_passwd"}
)
_APPLIED = frozenset(
    {"hostname", "fqdn", "preserve_hostname", "write_files", "bootcmd", "runcmd", "users",
     "ssh_authorized_keys", "network"}
)  # fmt: skip


@dataclass(frozen=True)
class WriteFile:
    path: str
    content: bytes
    owner: str = "root:root"  # USER[:GROUP], names or ids, resolved in the image
    mode: int = 0o644
    append: bool = False


@dataclass(frozen=True)
class UserEntry:
    """A user to create if the image lacks it, with the keys it may log in with."""

    name: str
    uid: int | None = None  # None: the next free one from 1000
    home: str | None = None  # None: /home/NAME for a new user, passwd's for one that exists
    shell: str | None = None
    gecos: str = ""
    keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class UserData:
    """What the agent applies when the image has no cloud-init of its own."""

    hostname: str | None = None
    files: tuple[WriteFile, ...] = ()
    users: tuple[UserEntry, ...] = ()
    bootcmd: str | None = None  # a sh script, run before the workload at every boot
    runcmd: str | None = None  # a sh script, run once per instance
    script: str | None = None  # user data that is a `#!` script, run once per instance
    network: NetworkConfig | None = None
    notes: tuple[str, ...] = field(default=())

    def once(self) -> list[tuple[str, str]]:
        """The per-instance scripts as (name, text), named as cloud-init names them."""
        named = [("runcmd", self.runcmd), ("part-001", self.script)]
        return [(name, text) for name, text in named if text is not None]


def parse_user_data(text: str) -> UserData:
    """Read user data; a UserDataError says what is wrong in one line."""
    if len(text.encode()) > MAX_USER_DATA:
        raise UserDataError(f"user data is larger than {MAX_USER_DATA >> 10} KiB")
    if text.startswith("#!"):
        return UserData(script=text)
    if not text.startswith("#cloud-config"):
        first = text.split("\n", 1)[0][:40]
        return UserData(notes=(f"user data starting {first!r} is not applied "
                               "(only #cloud-config and #! scripts are)",))  # fmt: skip
    try:
        document = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        raise UserDataError(f"invalid cloud-config YAML: {_yaml_error(exc)}") from None
    except yaml.YAMLError as exc:
        raise UserDataError(f"invalid cloud-config YAML: {exc}") from None
    return _cloud_config(expect(document or {}, dict, "cloud-config"))


def _yaml_error(exc: yaml.MarkedYAMLError) -> str:
    """`line N: problem`, with where the construct it is in began (an unclosed quote)."""
    mark, context = exc.problem_mark or exc.context_mark, exc.context_mark
    text = f"line {mark.line + 1}: {exc.problem}" if mark is not None else str(exc.problem)
    if exc.context and context is not None and context.line != getattr(mark, "line", None):
        text += f" ({exc.context} at line {context.line + 1})"
    return text


def _cloud_config(doc: dict[Any, Any]) -> UserData:
    notes: Notes = [f"{key} is not applied (the image has no cloud-init)"
                    for key in sorted(map(str, doc.keys() - _APPLIED))]  # fmt: skip
    hostname = expect(doc.get("hostname"), (str, type(None)), "hostname")
    fqdn = expect(doc.get("fqdn"), (str, type(None)), "fqdn")
    if expect(doc.get("preserve_hostname", False), bool, "preserve_hostname"):
        hostname = fqdn = None
    files = expect(doc.get("write_files") or [], list, "write_files")
    network = parse_network(doc["network"], notes) if "network" in doc else None
    return UserData(
        hostname=hostname or (fqdn.split(".")[0] if fqdn else None),
        files=tuple(_write_file(i, entry, notes) for i, entry in enumerate(files)),
        users=_users(doc, notes),
        bootcmd=_script(doc.get("bootcmd"), "bootcmd"),
        runcmd=_script(doc.get("runcmd"), "runcmd"),
        network=network,
        notes=tuple(notes),
    )


def _script(value: Any, key: str) -> str | None:
    """cloud-init's rule: each item is a line of a sh script, a list item shell-quoted."""
    if value is None:
        return None
    lines = []
    for i, item in enumerate(expect(value, list, key)):
        if isinstance(item, list):
            lines.append(shlex.join(str(word) for word in item))
        else:
            lines.append(expect(item, str, f"{key}[{i}]"))
    return "#!/bin/sh\n" + "".join(line + "\n" for line in lines)


def _write_file(index: int, value: Any, notes: Notes) -> WriteFile:
    where = f"write_files[{index}]"
    entry = expect(value, dict, where)
    for key in sorted(map(str, entry.keys() - _FILE_KEYS)):
        notes.append(f"{where}.{key} is not applied")
    path = expect(entry.get("path"), str, f"{where}.path")
    if not path.startswith("/") or "\0" in path:
        raise UserDataError(f"{where}.path must be an absolute path: {path!r}")
    expect(entry.get("defer", False), bool, f"{where}.defer")
    owner = expect(entry.get("owner", "root:root"), str, f"{where}.owner")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+)?", owner):
        raise UserDataError(f"{where}.owner must be USER[:GROUP]: {owner!r}")
    return WriteFile(
        path=path,
        content=_content(entry, where),
        owner=owner,
        mode=_mode(entry.get("permissions", 0o644), f"{where}.permissions"),
        append=expect(entry.get("append", False), bool, f"{where}.append"),
    )


def _content(entry: dict[Any, Any], where: str) -> bytes:
    """`content` decoded as `encoding` says (b64, gzip or both, as cloud-init reads them)."""
    raw = expect(entry.get("content", ""), (str, bytes), f"{where}.content")
    data = raw.encode() if isinstance(raw, str) else raw
    encoding = expect(entry.get("encoding", "text/plain"), str, f"{where}.encoding").lower()
    steps = {"text/plain": [], "b64": ["b64"], "base64": ["b64"], "gz": ["gz"], "gzip": ["gz"],
             "gz+b64": ["b64", "gz"], "gz+base64": ["b64", "gz"], "gzip+b64": ["b64", "gz"],
             "gzip+base64": ["b64", "gz"]}.get(encoding)  # fmt: skip
    if steps is None:
        raise UserDataError(f"{where}.encoding: unknown encoding {encoding!r}")
    try:
        for step in steps:
            data = (
                base64.b64decode(data, validate=False) if step == "b64" else gzip.decompress(data)
            )
    except (binascii.Error, OSError, EOFError, zlib.error) as exc:
        raise UserDataError(f"{where}.content is not {encoding}: {exc}") from None
    return data


def _mode(value: Any, where: str) -> int:
    """An integer (YAML reads 0644 as octal) or an octal string, as cloud-init takes it."""
    if isinstance(value, str):
        try:
            value = int(value, 8)
        except ValueError:
            raise UserDataError(f"{where} must be an octal mode: {value!r}") from None
    mode = expect(value, int, where)
    if not 0 <= mode <= 0o7777:
        raise UserDataError(f"{where} must be between 0 and 07777")
    return int(mode)


def _users(doc: dict[Any, Any], notes: Notes) -> tuple[UserEntry, ...]:
    """`users` and the top-level `ssh_authorized_keys`; the default user is root (hypr's
    images have no distribution user of their own)."""
    value = doc.get("users") or []
    if isinstance(value, str):
        value = [name.strip() for name in value.split(",") if name.strip()]
    entries = [_user(i, item, notes) for i, item in enumerate(expect(value, list, "users"))]
    top = expect_strings(doc.get("ssh_authorized_keys", []), "ssh_authorized_keys")
    entries.insert(0, UserEntry("root", keys=tuple(top)))
    merged: dict[str, UserEntry] = {}
    for entry in entries:
        known = merged.get(entry.name)
        if known is not None:
            entry = UserEntry(entry.name, entry.uid or known.uid, entry.home or known.home,
                              entry.shell or known.shell, entry.gecos or known.gecos,
                              known.keys + entry.keys)  # fmt: skip
        merged[entry.name] = entry
    return tuple(e for e in merged.values() if e.keys or e.name != "root")


def _user(index: int, item: Any, notes: Notes) -> UserEntry:
    where = f"users[{index}]"
    if isinstance(item, str):
        item = {"name": "root" if item == "default" else item}
    entry = expect(item, dict, where)
    for key in sorted(map(str, entry.keys() - _USER_KEYS)):
        notes.append(f"{where}.{key} is not applied")
    if not expect(entry.get("lock_passwd", True), bool, f"{where}.lock_passwd"):
        notes.append(f"{where}.lock_passwd: false is not applied (passwords stay locked)")
    name = expect(entry.get("name"), str, f"{where}.name")
    if not _USER_NAME.match(name):
        raise UserDataError(f"{where}.name is not a valid user name: {name!r}")
    uid = expect(entry.get("uid"), (int, str, type(None)), f"{where}.uid")
    if isinstance(uid, str) and not uid.isdigit():
        raise UserDataError(f"{where}.uid must be a number: {uid!r}")
    fields = {key: expect(entry.get(key), (str, type(None)), f"{where}.{key}")
              for key in ("homedir", "shell", "gecos")}  # fmt: skip
    for key, text in fields.items():
        if text is not None and (":" in text or "\n" in text):
            raise UserDataError(f"{where}.{key} must not contain ':' or a line break")
    if fields["homedir"] is not None and not fields["homedir"].startswith("/"):
        raise UserDataError(f"{where}.homedir must be an absolute path")
    keys = expect_strings(entry.get("ssh_authorized_keys", []), f"{where}.ssh_authorized_keys")
    if any("\n" in key for key in keys):
        raise UserDataError(f"{where}.ssh_authorized_keys: one key per item")
    return UserEntry(
        name=name,
        uid=int(uid) if uid is not None else None,
        home=fields["homedir"],
        shell=fields["shell"],
        gecos=fields["gecos"] or "",
        keys=tuple(keys),
    )
