"""Small checks of user input shared by every layer: restart policies, K=V pairs, NUL
bytes, IPv4 addresses, signals and users. One function per rule, so that the CLI, compose
and the daemon can never disagree about what is valid."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterable
from ipaddress import IPv4Address, ip_address
from typing import NamedTuple

from hypr.errors import InvalidArgument

RESTART_POLICIES = ("no", "always", "on-failure", "unless-stopped")
# Docker's `-u`: a user name or uid, optionally `:` a group name or gid.
_USER = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._-]*(:[A-Za-z0-9._][A-Za-z0-9._-]*)?$")


class RestartPolicy(NamedTuple):
    policy: str  # no | always | on-failure (unless-stopped is kept as always)
    max_restarts: int  # for on-failure:N; 0 means unlimited


def parse_restart(text: str) -> RestartPolicy:
    """Docker's `--restart` syntax: no, always, unless-stopped, on-failure[:N]."""
    policy, _, count = text.partition(":")
    if policy not in RESTART_POLICIES or (
        count and (policy != "on-failure" or not count.isdigit())
    ):
        raise InvalidArgument(
            f"invalid restart policy {text!r}: use no, always, unless-stopped, "
            "on-failure or on-failure:N"
        )
    return RestartPolicy(
        "always" if policy == "unless-stopped" else policy, int(count) if count else 0
    )


def check_env(items: Iterable[str]) -> None:
    """Every item is K=V with a non-empty K."""
    for item in items:
        if "=" not in item or item.startswith("="):
            raise InvalidArgument(f"invalid environment variable {item!r}: expected K=V")


def check_no_nul(what: str, values: Iterable[str | None]) -> None:
    """A NUL byte cannot cross into the guest (argv, environ and paths end at one)."""
    for value in values:
        if value is not None and "\0" in value:
            raise InvalidArgument(f"invalid {what}: it contains a NUL byte")


def parse_ipv4(text: str) -> IPv4Address:
    """An IPv4 address, or a one-line error (IPv6 is not supported)."""
    try:
        address = ip_address(text)
    except ValueError:
        raise InvalidArgument(f"invalid IP address {text!r}") from None
    if not isinstance(address, IPv4Address):
        raise InvalidArgument(f"invalid IP address {text!r}: only IPv4 is supported")
    return address


HOST_GATEWAY = "host-gateway"
_HOST_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def parse_extra_host(text: str) -> tuple[str, str]:
    """Docker's `--add-host NAME:IP` (or NAME=IP) -> (name, address); the address may be
    `host-gateway` (the VM's gateway, resolved at boot). IPv4 only, as hypr's networks."""
    name, sep, address = text.partition("=") if "=" in text else text.partition(":")
    if not sep or not _HOST_NAME.match(name) or len(name) > 253:
        raise InvalidArgument(f"invalid extra host {text!r}: expected NAME:IP")
    if address != HOST_GATEWAY:
        parse_ipv4(address)
    return name, address


def signal_number(text: str) -> int:
    """A stop signal as Docker takes it (`SIGQUIT`, `QUIT`, `3`) -> its number; the guest
    is Linux on the same architecture, so the host's numbering is the guest's."""
    name = text.strip().upper()
    if name.isdigit():
        number = int(name)
        if 1 <= number < signal.NSIG:
            return number
    else:
        name = name if name.startswith("SIG") else "SIG" + name
        if name in signal.Signals.__members__:
            return int(signal.Signals[name])
    raise InvalidArgument(f"invalid stop signal {text!r}: use a name like SIGQUIT or a number")


def check_user(text: str) -> str:
    """Docker's `-u USER[:GROUP]` (names or ids); the guest resolves names in the image."""
    if not _USER.match(text):
        raise InvalidArgument(f"invalid user {text!r}: use NAME, UID, NAME:GROUP or UID:GID")
    return text
