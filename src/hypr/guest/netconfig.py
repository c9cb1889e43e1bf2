"""The `network` key of a cloud-config (netplan's version 2), read on the host.

hypr configures a VM's NICs from its kernel command line, so a cloud-config's network
section becomes per-NIC overrides of what the host tells the agent: DHCP or a static
address, a gateway, name servers and an MTU. An entry finds its NIC by interface name
(`eth0` is the first NIC, globs allowed) or by `match: macaddress`.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from ipaddress import AddressValueError, IPv4Address, IPv4Interface, NetmaskValueError
from typing import Any

from hypr.guest.cloudtypes import Notes, UserDataError, expect, expect_strings

# What an `ethernets` entry may say; a key outside these is noted, not applied.
_ETHERNET_KEYS = frozenset(
    {"match", "set-name", "dhcp4", "dhcp4-overrides", "dhcp6", "addresses", "gateway4",
     "nameservers", "mtu", "routes", "optional"}
)  # fmt: skip


@dataclass(frozen=True)
class EthernetConfig:
    """One `ethernets` entry: which NIC it is for, and what that NIC gets."""

    key: str  # the entry's id, the interface name unless `match` says otherwise
    name: str | None  # an interface name (glob) to match, ethN for the VM's Nth NIC
    mac: str | None  # lower case
    dhcp4: bool = False
    address: IPv4Interface | None = None  # the first IPv4 of `addresses`
    gateway: IPv4Address | None = None
    nameservers: tuple[str, ...] = ()
    mtu: int | None = None

    def matches(self, index: int, mac: str | None) -> bool:
        """Whether this entry is for the VM's NIC number `index` (named ethN in the guest)
        with MAC `mac` (None: not chosen yet)."""
        if self.mac is not None and (mac is None or mac.lower() != self.mac):
            return False
        return self.name is None or fnmatchcase(f"eth{index}", self.name)


@dataclass(frozen=True)
class NetworkConfig:
    ethernets: tuple[EthernetConfig, ...]

    def for_nic(self, index: int, mac: str | None) -> EthernetConfig | None:
        return next((e for e in self.ethernets if e.matches(index, mac)), None)


def parse_network(value: Any, notes: Notes) -> NetworkConfig | None:
    """The `network` key; None when it configures nothing hypr applies."""
    section = expect(value, dict, "network")
    if section.get("config") == "disabled":
        return None
    version = section.get("version")
    if version != 2:
        notes.append(f"network version {version!r} is not applied (only version 2 is)")
        return None
    for key in section.keys() - {"version", "ethernets", "renderer"}:
        notes.append(f"network.{key} is not applied")
    ethernets = expect(section.get("ethernets") or {}, dict, "network.ethernets")
    return NetworkConfig(tuple(_ethernet(str(k), v, notes) for k, v in ethernets.items()))


def _ethernet(key: str, value: Any, notes: Notes) -> EthernetConfig:
    where = f"network.ethernets.{key}"
    entry = expect(value or {}, dict, where)
    for unknown in sorted(entry.keys() - _ETHERNET_KEYS):
        notes.append(f"{where}.{unknown} is not applied")
    for ignored in ("routes", "set-name"):
        if ignored in entry:
            notes.append(f"{where}.{ignored} is not applied (NICs are named ethN by order)")
    match = expect(entry.get("match") or {}, dict, f"{where}.match")
    name = expect(
        match.get("name", None if match else key), (str, type(None)), f"{where}.match.name"
    )
    mac = expect(match.get("macaddress"), (str, type(None)), f"{where}.match.macaddress")
    dhcp4 = expect(entry.get("dhcp4", False), bool, f"{where}.dhcp4")
    expect(entry.get("dhcp4-overrides", {}), dict, f"{where}.dhcp4-overrides")
    if expect(entry.get("dhcp6", False), bool, f"{where}.dhcp6"):
        notes.append(f"{where}.dhcp6 is not applied (hypr's networks are IPv4)")
    address = _first_ipv4(expect_strings(entry.get("addresses", []), f"{where}.addresses"), where)
    if dhcp4 and address is not None:
        raise UserDataError(f"{where}: dhcp4 and static addresses together")
    gateway = _ipv4(entry.get("gateway4"), f"{where}.gateway4")
    servers = expect(entry.get("nameservers") or {}, dict, f"{where}.nameservers")
    dns = expect_strings(servers.get("addresses", []), f"{where}.nameservers.addresses")
    for server in dns:
        _ipv4(server, f"{where}.nameservers.addresses")
    if "search" in servers:
        notes.append(f"{where}.nameservers.search is not applied")
    mtu = expect(entry.get("mtu"), (int, type(None)), f"{where}.mtu")
    if mtu is not None and not 68 <= mtu <= 65535:
        raise UserDataError(f"{where}.mtu must be between 68 and 65535")
    return EthernetConfig(
        key=key, name=name, mac=mac.lower() if mac else None, dhcp4=dhcp4, address=address,
        gateway=gateway, nameservers=tuple(dns), mtu=mtu,
    )  # fmt: skip


def _first_ipv4(addresses: list[str], where: str) -> IPv4Interface | None:
    """The first IPv4 address; IPv6 ones are skipped (hypr's networks are IPv4)."""
    for text in addresses:
        if ":" in text:
            continue
        if "/" not in text:
            raise UserDataError(f"{where}.addresses: {text!r} needs a prefix length (/24)")
        try:
            return IPv4Interface(text)
        except (AddressValueError, NetmaskValueError, ValueError):
            raise UserDataError(f"{where}.addresses: {text!r} is not an IPv4 address") from None
    return None


def _ipv4(value: Any, where: str) -> IPv4Address | None:
    if value is None:
        return None
    try:
        return IPv4Address(expect(value, str, where))
    except (AddressValueError, ValueError):
        raise UserDataError(f"{where}: {value!r} is not an IPv4 address") from None
