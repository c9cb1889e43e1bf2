"""`-v`, `--mount` and `--tmpfs` as the Docker CLI reads them, into the run request's
`volumes`, `mounts` and `tmpfs`. The daemon checks what they say; the CLI only does what
needs the user's side: relative host paths are made absolute against the current directory
(and `~` the user's home), as `docker run -v ./data:/data` does."""

from __future__ import annotations

import os
from typing import Any

from hypr import units
from hypr.errors import InvalidArgument

_MOUNT_KEYS = {
    "type": "type",
    "source": "source", "src": "source",
    "target": "target", "destination": "target", "dst": "target",
    "readonly": "read_only", "ro": "read_only",
    "volume-nocopy": "nocopy",
    "tmpfs-size": "tmpfs_size",
    "tmpfs-mode": "tmpfs_mode",
}  # fmt: skip
_TRUE = {"", "1", "true"}
_FALSE = {"0", "false"}


def host_path(path: str) -> str:
    """`./x`, `../x` and `~/x` as absolute paths; anything else as written."""
    if path.startswith("~"):
        return os.path.expanduser(path)
    if path == "." or path.startswith(("./", "../")) or path == "..":
        return os.path.abspath(path)
    return path


def volume_option(text: str) -> str:
    """One `-v [SOURCE:]TARGET[:OPTIONS]`, with a relative SOURCE made absolute."""
    source, sep, rest = text.partition(":")
    return host_path(source) + sep + rest if sep else text


def _flag(key: str, value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise InvalidArgument(f"invalid --mount field {key}={value!r}: expected true or false")


def mount_option(text: str) -> dict[str, Any]:
    """One `--mount type=bind,source=./x,target=/x,readonly` as a request mount."""
    mount: dict[str, Any] = {}
    for field in filter(None, text.split(",")):
        key, _, value = field.partition("=")
        name = _MOUNT_KEYS.get(key.strip().lower())
        if name is None:
            raise InvalidArgument(f"invalid --mount field {key!r} in {text!r}")
        if name in ("read_only", "nocopy"):
            mount[name] = _flag(key, value)
        elif name == "tmpfs_size":
            mount[name] = units.parse_size(value)
        elif name == "tmpfs_mode":
            try:
                mount[name] = int(value, 8)
            except ValueError:
                raise InvalidArgument(f"invalid --mount tmpfs-mode {value!r}") from None
        else:
            mount[name] = value
    if "target" not in mount:
        raise InvalidArgument(f"invalid --mount {text!r}: target is required")
    if mount.get("type", "volume") == "bind" and mount.get("source"):
        mount["source"] = host_path(mount["source"])
    return mount


def tmpfs_option(text: str) -> tuple[str, str]:
    """One `--tmpfs TARGET[:OPTIONS]` as (target, options)."""
    target, _, options = text.partition(":")
    return target, options
