"""A volume's driver and options (`-d`, `--opt`): Docker's `local` driver, in the one form
hypr supports besides a plain directory, `type=none,o=bind,device=PATH`, which makes an
existing host directory a named volume."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from hypr.errors import InvalidArgument

DRIVER = "local"
BIND_FORM = "type=none,o=bind,device=/absolute/path"
_KEYS = ("type", "o", "device")


def check_driver(driver: str) -> str:
    if driver != DRIVER:
        raise InvalidArgument(f"volume driver {driver!r} is not supported: only {DRIVER!r}")
    return driver


def bound_device(options: Mapping[str, str], private: Path) -> Path | None:
    """The host directory a volume with these options binds, resolved (symlinks, `..`);
    None for no options (a directory of hypr's own). `private` is hypr's data directory,
    which no volume may expose."""
    if not options:
        return None
    for key in sorted(options):
        if key not in _KEYS:
            raise InvalidArgument(
                f"unknown volume option {key!r}: the local driver takes {BIND_FORM}"
            )
    if options.get("type") != "none" or options.get("o") not in ("bind", "rbind"):
        given = ",".join(f"{k}={v}" for k, v in sorted(options.items()))
        raise InvalidArgument(
            f"unsupported volume options {given}: the local driver takes {BIND_FORM}"
        )
    device = options.get("device", "")
    if not os.path.isabs(device):
        raise InvalidArgument(f"volume option device={device} must be an absolute path")
    resolved = Path(os.path.realpath(device))
    if not resolved.is_dir():
        what = "is not a directory" if resolved.exists() else "does not exist"
        raise InvalidArgument(f"volume option device={device}: {resolved} {what}")
    if resolved.is_relative_to(os.path.realpath(private)):
        raise InvalidArgument(f"volume option device={device} is inside hypr's data directory")
    return resolved
