"""The nftables firewall driver: hypr owns exactly two tables, `inet hypr` (forwarding,
NAT, published ports, DNS steering) and `bridge hypr` (anti-spoofing on VMs' TAPs).

The rules are fixed and every network is only a few set elements, so adding or removing a
network is one small atomic transaction whose cost does not depend on how many networks
exist, and hypr never touches anybody else's tables (the netavark model). Start-up replaces
the whole table in one transaction, built from the database.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address, IPv4Network
from typing import Protocol

import nftables

from hypr.state.networks import NetworkRecord
from hypr.state.ports import ANY_ADDRESS, PortForward

TABLE = "inet hypr"

# Forward policy, in order:
#   * traffic within one network passes (it reaches this hook when br_netfilter is loaded);
#   * --internal networks have no path in or out at all;
#   * published (DNAT-ed) ports are reachable from anywhere but internal networks, also
#     from another network: publishing a port opens it to whoever reaches the host;
#   * traffic between two different hypr bridges is dropped (network isolation);
#   * from outside, only replies may enter a network.
# Masquerade rewrites traffic of non-internal subnets leaving through a non-hypr interface.
#
# Published ports: traffic to a local address is DNAT-ed through one map element per port,
# `host_forwards` (host ip . protocol . port) for ports bound to one address, then `forwards`
# (protocol . port) for ports on every address, so a packet costs two hash lookups whatever
# the number of ports. Ports of the SSH pool are dropped first unless the source is in
# `ssh_allowed`. The output hook does the same for the host's own connections, 127.0.0.1
# included (the bridges have route_localnet); postrouting masquerades those loopback
# sources, and DNAT-ed traffic that goes back into the bridge it came from (hairpin), so
# that replies pass through the host to be un-NAT-ed.
_TABLE_BODY = """
    set bridges { type ifname; }
    set internal_bridges { type ifname; }
    set bridge_pairs { type ifname . ifname; }
    set masquerade_subnets { type ipv4_addr; flags interval; }
    map forwards { type inet_proto . inet_service : ipv4_addr . inet_service; }
    map host_forwards { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }
    set ssh_ports { type inet_service; }
    set ssh_allowed { type ipv4_addr; flags interval; }

    chain forward {
        type filter hook forward priority filter; policy accept;
        iifname . oifname @bridge_pairs accept
        iifname @internal_bridges drop
        oifname @internal_bridges drop
        oifname @bridges ct status dnat accept
        iifname @bridges oifname @bridges drop
        oifname @bridges ct state established,related accept
        oifname @bridges drop
    }

    chain publish {
        tcp dport @ssh_ports ip saddr != @ssh_allowed drop
        dnat ip to ip daddr . meta l4proto . th dport map @host_forwards
        dnat ip to meta l4proto . th dport map @forwards
    }

    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        meta nfproto ipv4 fib daddr type local jump publish
    }

    chain output {
        type nat hook output priority -100; policy accept;
        meta nfproto ipv4 fib daddr type local jump publish
    }

    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr @masquerade_subnets oifname != @bridges masquerade
        oifname @bridges ip saddr 127.0.0.0/8 masquerade
        ct status dnat iifname . oifname @bridge_pairs masquerade
    }
"""

# DNS (see hypr.network.dns_views): every query a guest sends to any hypr gateway, on port 53 or
# 41003, is redirected to port 53 of the gateway of the bridge it came in on, so a VM only
# ever asks its own network's server, whatever address it tries; a VM on several networks
# is sent instead to the port of its "view" server (`dns_views`, keyed by its addresses).
# The host's own queries to port 41003 go to port 53. These chains run just before the
# port-publishing ones, whose NAT they pre-empt: a published host port 53 never captures
# the guests' DNS. A view's port is reachable from the bridges only through the redirect.
_DNS_BODY = """
    set dns_gateways { type ipv4_addr; }
    set dns_view_ports { type inet_service; }
    map dns_views { type ipv4_addr : inet_service; }

    chain dns_redirect {
        meta l4proto { tcp, udp } th dport { 53, 41003 } redirect to : ip saddr map @dns_views
        meta l4proto { tcp, udp } th dport { 53, 41003 } redirect to :53
    }

    chain dns_prerouting {
        type nat hook prerouting priority dstnat - 10; policy accept;
        iifname @bridges ip daddr @dns_gateways jump dns_redirect
    }

    chain dns_output {
        type nat hook output priority -110; policy accept;
        ip daddr @dns_gateways meta l4proto { tcp, udp } th dport 41003 dnat ip to ip daddr:53
    }

    chain dns_input {
        type filter hook input priority filter; policy accept;
        iifname @bridges meta l4proto { tcp, udp } th dport @dns_view_ports ct status ! dnat drop
    }
"""


# --internal networks are sealed from the host too: from an internal bridge, the host's
# own stack answers only replies, DHCP and DNS on the address of that very bridge (its
# gateway, where its dnsmasq listens; a view port only when the DNS redirect sent it
# there). Other gateways, other host addresses and every other port stay out of reach.
_INPUT_BODY = """
    chain input {
        type filter hook input priority filter; policy accept;
        iifname @internal_bridges jump internal_input
    }

    chain internal_input {
        ct state established,related accept
        udp dport 67 accept
        meta l4proto { tcp, udp } th dport 53 fib daddr . iif type local accept
        meta l4proto { tcp, udp } th dport @dns_view_ports fib daddr . iif type local accept
        drop
    }
"""

# Anti-spoofing, in a table of the bridge family that hypr also owns alone: a frame that
# enters a bridge from a VM's TAP (`nics`) must carry the VM's MAC (`nic_macs`); its IPv4
# packets and ARP must carry the VM's address too (`nic_ips`), except a DHCP request from
# 0.0.0.0, which a --dhcp guest sends before it has one, and an ARP probe from 0.0.0.0. A
# TAP is three set elements, added when its VM starts and deleted when it stops.
BRIDGE_TABLE = "bridge hypr"
_BRIDGE_BODY = """
    set nics { type ifname; }
    set nic_macs { type ifname . ether_addr; }
    set nic_ips { type ifname . ether_addr . ipv4_addr; }

    chain prerouting {
        type filter hook prerouting priority -300; policy accept;
        iifname @nics jump nic_in
    }

    chain nic_in {
        iifname . ether saddr != @nic_macs drop
        ether type arp iifname . arp saddr ether . arp saddr ip @nic_ips accept
        ether type arp arp saddr ip 0.0.0.0 accept
        ether type ip iifname . ether saddr . ip saddr @nic_ips accept
        ether type ip ip saddr 0.0.0.0 udp sport 68 udp dport 67 accept
        ether type { ip, arp, vlan, 0x88a8 } drop
    }
"""


class FirewallError(RuntimeError):
    """nft refused a transaction; the message is nft's own."""


class FirewallDriver(Protocol):
    """What the network layer needs from a firewall backend."""

    def setup(self, networks: Iterable[NetworkRecord]) -> None: ...

    def add_network(self, net: NetworkRecord) -> None: ...

    def remove_network(self, net: NetworkRecord) -> None: ...

    def teardown(self) -> None: ...


class ForwardingDriver(Protocol):
    """What port forwarding needs from a firewall backend."""

    def add_forwards(self, forwards: Iterable[PortForward], target: IPv4Address) -> None: ...

    def remove_forwards(self, forwards: Iterable[PortForward], target: IPv4Address) -> None: ...


class DnsSteeringDriver(Protocol):
    """What the DNS service needs from a firewall backend: view ports, and the addresses
    of multi-homed VMs whose queries go to them."""

    def add_dns_view(self, port: int) -> None: ...

    def remove_dns_view(self, port: int) -> None: ...

    def steer_dns(self, addresses: Mapping[IPv4Address, int]) -> None: ...

    def unsteer_dns(self, addresses: Iterable[IPv4Address]) -> None: ...


class NicGuardDriver(Protocol):
    """What anti-spoofing needs from a firewall backend: one VM NIC's TAP passes only
    frames from its MAC, and IPv4 and ARP only from its address (None: DHCP only); a
    `routed` (ptp) TAP joins the forward policy as a network of its own."""

    def allow_nic(
        self, tap: str, mac: str, address: IPv4Address | None, routed: bool = False
    ) -> None: ...

    def forget_nic(
        self, tap: str, mac: str, address: IPv4Address | None, routed: bool = False
    ) -> None: ...


class NftablesFirewall:
    """Drives libnftables in-process (no fork per change) through its Python binding."""

    def __init__(self, ssh_allowed: IPv4Network = IPv4Network("0.0.0.0/0")) -> None:
        self._nft = nftables.Nftables()
        self._lock = threading.Lock()
        self.ssh_allowed = ssh_allowed

    def run(self, commands: str) -> str:
        """Apply a batch of nft commands as one transaction."""
        with self._lock:
            rc, output, error = self._nft.cmd(commands)
        if rc != 0:
            raise FirewallError(error.strip() or f"nft failed with code {rc}")
        return str(output)

    def setup(self, networks: Iterable[NetworkRecord]) -> None:
        """Replace hypr's table with one that holds exactly `networks`."""
        body = _TABLE_BODY + _DNS_BODY + _INPUT_BODY
        batch = [
            f"table {TABLE} {{}}",
            f"delete table {TABLE}",
            f"table {TABLE} {{{body}}}",
            f"table {BRIDGE_TABLE} {{}}",
            f"delete table {BRIDGE_TABLE}",
            f"table {BRIDGE_TABLE} {{{_BRIDGE_BODY}}}",
        ]
        batch += [_element_commands("add", net) for net in networks]
        batch.append(f"add element {TABLE} ssh_allowed {{ {self.ssh_allowed} }}")
        self.run("\n".join(batch))

    def add_network(self, net: NetworkRecord) -> None:
        self.run(_element_commands("add", net))

    def remove_network(self, net: NetworkRecord) -> None:
        self.run(_element_commands("delete", net))

    def add_forwards(self, forwards: Iterable[PortForward], target: IPv4Address) -> None:
        """Publish ports of the VM at `target`, one map element each, in one transaction."""
        self.run(_forward_commands("add", forwards, target))

    def remove_forwards(self, forwards: Iterable[PortForward], target: IPv4Address) -> None:
        self.run(_forward_commands("delete", forwards, target))

    def add_dns_view(self, port: int) -> None:
        self.run(f"add element {TABLE} dns_view_ports {{ {port} }}")

    def remove_dns_view(self, port: int) -> None:
        self.run(f"delete element {TABLE} dns_view_ports {{ {port} }}")

    def steer_dns(self, addresses: Mapping[IPv4Address, int]) -> None:
        """Send the DNS queries from each address to the view server on its port."""
        if addresses:
            items = ", ".join(f"{address} : {port}" for address, port in addresses.items())
            self.run(f"add element {TABLE} dns_views {{ {items} }}")

    def unsteer_dns(self, addresses: Iterable[IPv4Address]) -> None:
        items = ", ".join(str(address) for address in addresses)
        if items:
            self.run(f"delete element {TABLE} dns_views {{ {items} }}")

    def allow_nic(
        self, tap: str, mac: str, address: IPv4Address | None, routed: bool = False
    ) -> None:
        self.run(_nic_commands("add", tap, mac, address, routed))

    def forget_nic(
        self, tap: str, mac: str, address: IPv4Address | None, routed: bool = False
    ) -> None:
        self.run(_nic_commands("delete", tap, mac, address, routed))

    def teardown(self) -> None:
        self.run(
            "\n".join(
                f"table {table} {{}}\ndelete table {table}" for table in (TABLE, BRIDGE_TABLE)
            )
        )


def _element_commands(verb: str, net: NetworkRecord) -> str:
    """A bridge network's elements; a ptp network has only its subnet's masquerade here,
    its TAPs join `bridges` one by one (`allow_nic`, routed)."""
    if net.driver == "ptp":
        return f"{verb} element {TABLE} masquerade_subnets {{ {net.subnet} }}"
    bridge = f'"{net.bridge}"'
    lines = [
        f"{verb} element {TABLE} bridges {{ {bridge} }}",
        f"{verb} element {TABLE} bridge_pairs {{ {bridge} . {bridge} }}",
        f"{verb} element {TABLE} dns_gateways {{ {net.gateway} }}",
    ]
    if net.internal:
        lines.append(f"{verb} element {TABLE} internal_bridges {{ {bridge} }}")
    else:
        lines.append(f"{verb} element {TABLE} masquerade_subnets {{ {net.subnet} }}")
    return "\n".join(lines)


def _nic_commands(verb: str, tap: str, mac: str, address: IPv4Address | None, routed: bool) -> str:
    """Anti-spoofing of a bridged TAP; a routed (ptp) TAP is a network of its own to the
    forward policy, its anti-spoofing is the kernel's strict reverse-path filter."""
    if routed:
        return "\n".join(
            [
                f'{verb} element {TABLE} bridges {{ "{tap}" }}',
                f'{verb} element {TABLE} bridge_pairs {{ "{tap}" . "{tap}" }}',
            ]
        )
    lines = [
        f'{verb} element {BRIDGE_TABLE} nics {{ "{tap}" }}',
        f'{verb} element {BRIDGE_TABLE} nic_macs {{ "{tap}" . {mac} }}',
    ]
    if address is not None:
        lines.append(f'{verb} element {BRIDGE_TABLE} nic_ips {{ "{tap}" . {mac} . {address} }}')
    return "\n".join(lines)


def _forward_commands(verb: str, forwards: Iterable[PortForward], target: IPv4Address) -> str:
    elements: dict[str, list[str]] = {"forwards": [], "host_forwards": [], "ssh_ports": []}
    for fwd in forwards:
        key = f"{fwd.protocol} . {fwd.host_port}"
        value = f"{target} . {fwd.guest_port}"
        if fwd.host_ip == ANY_ADDRESS:
            elements["forwards"].append(f"{key} : {value}")
        else:
            elements["host_forwards"].append(f"{fwd.host_ip} . {key} : {value}")
        if fwd.ssh:
            elements["ssh_ports"].append(str(fwd.host_port))
    return "\n".join(
        f"{verb} element {TABLE} {name} {{ {', '.join(items)} }}"
        for name, items in elements.items()
        if items
    )
