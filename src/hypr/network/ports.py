"""Published ports: the `-p` syntax, and the host sockets that keep a published port hypr's.

The kernel forwards a published port by DNAT before any socket lookup, so a program on the
host that listens on the same port would silently never see its traffic. hypr therefore
refuses a port that something on the host has bound, and holds a bound (never listening)
socket on each published port while the VM runs, so nothing else can bind it meanwhile, as
Docker's proxy does.
"""

from __future__ import annotations

import errno
import re
import socket
from ipaddress import IPv4Address, ip_address

from hypr.config import DEFAULT_MAX_PORT_RANGE
from hypr.errors import Conflict, HyprError, InternalError, InvalidArgument
from hypr.state.ports import ANY_ADDRESS, PortForward

PROTOCOLS = ("tcp", "udp")
SPEC_SYNTAX = (
    "[[HOST_IP:]HOST_PORT:]GUEST_PORT[/tcp|udp], ports may be ranges such as 8000-8010, "
    "no (or an empty) HOST_PORT picks a free one"
)
FREE_PORT = 0  # a forward's host port before one is picked (`-p 80`, `-p 127.0.0.1::80`)
_PORTS = re.compile(r"^([0-9]{1,5})(?:-([0-9]{1,5}))?$")


def parse_publish(spec: str, max_range: int = DEFAULT_MAX_PORT_RANGE) -> list[PortForward]:
    """Parse one `-p` value into one forward per port (a range gives several, at most
    `max_range`); without a host port each forward's is FREE_PORT, for the caller to pick."""
    text, slash, protocol = spec.strip().partition("/")
    protocol = protocol.lower() if slash else "tcp"
    if protocol not in PROTOCOLS:
        raise InvalidArgument(f"invalid port spec {spec!r}: protocol must be tcp or udp")
    parts = text.split(":")
    if len(parts) not in (1, 2, 3):
        raise InvalidArgument(f"invalid port spec {spec!r}: expected {SPEC_SYNTAX}")
    host_ip = _parse_host_ip(spec, parts[0]) if len(parts) == 3 else ANY_ADDRESS
    guest_first, guest_last = _parse_ports(spec, parts[-1])
    free = len(parts) == 1 or not parts[-2]
    host_first, host_last = (
        (FREE_PORT, FREE_PORT + guest_last - guest_first) if free else _parse_ports(spec, parts[-2])
    )
    if host_last - host_first != guest_last - guest_first:
        raise InvalidArgument(
            f"invalid port spec {spec!r}: the host range has {host_last - host_first + 1} "
            f"ports and the guest range {guest_last - guest_first + 1}; they must match"
        )
    if host_last - host_first + 1 > max_range:
        raise InvalidArgument(
            f"invalid port spec {spec!r}: the range has {host_last - host_first + 1} ports, "
            f"more than the {max_range} one range may publish (HYPR_MAX_PORT_RANGE)"
        )
    return [
        PortForward(
            protocol, host_ip, FREE_PORT if free else host_first + offset, guest_first + offset
        )
        for offset in range(guest_last - guest_first + 1)
    ]


def _parse_host_ip(spec: str, text: str) -> IPv4Address:
    try:
        address = ip_address(text)
    except ValueError:
        raise InvalidArgument(
            f"invalid port spec {spec!r}: {text!r} is not an IP address"
        ) from None
    if not isinstance(address, IPv4Address):
        raise InvalidArgument(f"invalid port spec {spec!r}: only IPv4 host addresses are supported")
    return address


def _parse_ports(spec: str, text: str) -> tuple[int, int]:
    match = _PORTS.match(text)
    if match is None:
        raise InvalidArgument(f"invalid port spec {spec!r}: expected {SPEC_SYNTAX}")
    first = int(match[1])
    last = int(match[2]) if match[2] else first
    for port in (first, last):
        if not 1 <= port <= 65535:
            raise InvalidArgument(f"invalid port spec {spec!r}: port {port} is not in 1-65535")
    if last < first:
        raise InvalidArgument(f"invalid port spec {spec!r}: range {text} runs backwards")
    return first, last


def bind_host_port(fwd: PortForward) -> socket.socket:
    """Bind a socket, never listening, to the forward's host address and port.

    A TCP port that only connections in TIME_WAIT still use is taken on the second try with
    SO_REUSEADDR, which Linux refuses only while some socket listens there.
    """
    try:
        return _bind(fwd, reuse=False)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE or fwd.protocol != "tcp":
            raise _bind_error(fwd, exc) from None
    try:
        return _bind(fwd, reuse=True)
    except OSError as exc:
        raise _bind_error(fwd, exc) from None


def _bind(fwd: PortForward, reuse: bool) -> socket.socket:
    kind = socket.SOCK_STREAM if fwd.protocol == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(socket.AF_INET, kind)
    try:
        if reuse:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((str(fwd.host_ip), fwd.host_port))
    except BaseException:
        sock.close()
        raise
    return sock


def check_host_port(fwd: PortForward) -> None:
    """Refuse a port that is in use on the host or an address the host does not have."""
    bind_host_port(fwd).close()


def _bind_error(fwd: PortForward, exc: OSError) -> HyprError:
    if exc.errno == errno.EADDRINUSE:
        return Conflict(f"host port {fwd.host} is already in use on the host")
    if exc.errno == errno.EADDRNOTAVAIL:
        return InvalidArgument(f"host IP {fwd.host_ip} is not an address of this host")
    return InternalError(f"hyprd cannot reserve host port {fwd.host}: {exc.strerror}")
