"""Identifiers and names: Docker-shaped ids, and the validation of user-given names."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

from hypr.errors import InvalidArgument

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
# A DNS label (RFC 1123): VM names double as host names in the `.hypr` domain.
_HOSTNAME = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$")


def new_id() -> str:
    """A 64-hex-digit id, as Docker gives networks and containers."""
    return secrets.token_hex(32)


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def check_network_name(name: str) -> str:
    if not _NAME.match(name) or len(name) > 128:
        raise InvalidArgument(
            f"invalid network name {name!r}: use letters, digits, '_', '.', '-' "
            "and start with a letter or digit"
        )
    return name


def check_vm_name(name: str) -> str:
    """Docker's container names (docker-compose 1.29 makes `project_service_1`) that are
    also DNS names, so that `<name>.hypr` always resolves, and fit a host name (63)."""
    parts = name.split(".")
    if (
        not _NAME.match(name)
        or len(name) > 63
        or any(not p or p.startswith("-") or p.endswith("-") for p in parts)
    ):
        raise InvalidArgument(
            f"invalid VM name {name!r}: use letters, digits, '_', '.' and '-' (at most 63), "
            "start with a letter or digit, no part between dots starting or ending with '-'"
        )
    return name


def check_hostname(name: str) -> str:
    """A guest's host name is a DNS label (RFC 1123)."""
    if not _HOSTNAME.match(name):
        raise InvalidArgument(
            f"invalid hostname {name!r}: use letters, digits and '-', at most 63 "
            "characters, not starting or ending with '-'"
        )
    return name
