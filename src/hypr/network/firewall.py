"""The nftables firewall driver: hypr owns exactly one table, `inet hypr`.

The rules are fixed and every network is only a few set elements, so adding or removing a
network is one small atomic transaction whose cost does not depend on how many networks
exist, and hypr never touches anybody else's tables (the netavark model). Start-up replaces
the whole table in one transaction, built from the database.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Protocol

import nftables

from hypr.state.networks import NetworkRecord

TABLE = "inet hypr"

# Forward policy, in order:
#   * traffic within one network passes (it reaches this hook when br_netfilter is loaded);
#   * --internal networks have no path in or out at all;
#   * traffic between two different hypr bridges is dropped (network isolation);
#   * from outside, only replies and published (DNAT-ed) ports may enter a network.
# Masquerade rewrites traffic of non-internal subnets leaving through a non-hypr interface.
_TABLE_BODY = """
    set bridges { type ifname; }
    set internal_bridges { type ifname; }
    set bridge_pairs { type ifname . ifname; }
    set masquerade_subnets { type ipv4_addr; flags interval; }

    chain forward {
        type filter hook forward priority filter; policy accept;
        iifname . oifname @bridge_pairs accept
        iifname @internal_bridges drop
        oifname @internal_bridges drop
        iifname @bridges oifname @bridges drop
        oifname @bridges ct state established,related accept
        oifname @bridges ct status dnat accept
        oifname @bridges drop
    }

    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr @masquerade_subnets oifname != @bridges masquerade
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


class NftablesFirewall:
    """Drives libnftables in-process (no fork per change) through its Python binding."""

    def __init__(self) -> None:
        self._nft = nftables.Nftables()
        self._lock = threading.Lock()

    def run(self, commands: str) -> str:
        """Apply a batch of nft commands as one transaction."""
        with self._lock:
            rc, output, error = self._nft.cmd(commands)
        if rc != 0:
            raise FirewallError(error.strip() or f"nft failed with code {rc}")
        return str(output)

    def setup(self, networks: Iterable[NetworkRecord]) -> None:
        """Replace hypr's table with one that holds exactly `networks`."""
        batch = [f"table {TABLE} {{}}", f"delete table {TABLE}", f"table {TABLE} {{{_TABLE_BODY}}}"]
        batch += [_element_commands("add", net) for net in networks]
        self.run("\n".join(batch))

    def add_network(self, net: NetworkRecord) -> None:
        self.run(_element_commands("add", net))

    def remove_network(self, net: NetworkRecord) -> None:
        self.run(_element_commands("delete", net))

    def teardown(self) -> None:
        self.run(f"table {TABLE} {{}}\ndelete table {TABLE}")


def _element_commands(verb: str, net: NetworkRecord) -> str:
    bridge = f'"{net.bridge}"'
    lines = [
        f"{verb} element {TABLE} bridges {{ {bridge} }}",
        f"{verb} element {TABLE} bridge_pairs {{ {bridge} . {bridge} }}",
    ]
    if net.internal:
        lines.append(f"{verb} element {TABLE} internal_bridges {{ {bridge} }}")
    else:
        lines.append(f"{verb} element {TABLE} masquerade_subnets {{ {net.subnet} }}")
    return "\n".join(lines)
