"""What hyprd's DNS servers read: their dnsmasq.conf and the record files they watch.

A network's server listens on its gateway, port 53: it answers `<vm>.hypr` and `<vm>` for
the VMs running on the network, PTR for their addresses, forwards other names to hyprd's
/etc/resolv.conf except on --internal networks, and serves DHCP to reserved MACs only. A
view serves the records of several networks (see hypr.network.dns_views).

Files, under $HYPR_RUN_DIR/dns/ (short, for short paths):
  <network id[:12]>/  dnsmasq.conf, .pid, .log, leases, hosts/<vm>, dhcp/<vm>
  view-<hash>/        dnsmasq.conf, .pid, .log
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from hypr.network.dnsmasq import LOG_FILE, PID_FILE, write_atomic
from hypr.state.networks import NetworkRecord
from hypr.state.vms import NicRecord, VmRecord

log = logging.getLogger(__name__)

DOMAIN = "hypr"
GUEST_PORT = 53
HOST_PORT = 41003  # as the HYPR seed says; the firewall redirects it to port 53
LEASES = "leases"
LEASE_TIME = "1h"
_DNS_NAME = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9_-]{1,63}(?<!-))*$")


def network_dir(run_dir: Path, network_id: str) -> Path:
    return run_dir / "dns" / network_id[:12]


def record_key(vm_id: str) -> str:
    """The file name of a VM's record and reservation."""
    return vm_id[:16]


def write_record(hosts_dir: Path, key: str, names: Iterable[str], address: IPv4Address) -> None:
    """One VM's names on one network, as the file dnsmasq reads from its hosts directory:
    each as `<name>.hypr` and bare; the first is what PTR answers."""
    fields = " ".join(f"{name}.{DOMAIN} {name}" for name in names)
    write_atomic(hosts_dir / key, f"{address} {fields}\n")


def record_names(vm: VmRecord, nic: NicRecord) -> list[str]:
    """The VM's name, then its aliases on this NIC's network (compose service names); an
    alias that is no DNS name is left out rather than let into dnsmasq's hosts syntax."""
    aliases = vm.spec.aliases[nic.idx] if nic.idx < len(vm.spec.aliases) else []
    valid = [alias for alias in aliases if _DNS_NAME.match(alias) and alias != vm.name]
    for alias in set(aliases) - set(valid) - {vm.name}:
        log.warning("VM %s: alias %r is not a DNS name; not publishing it", vm.name, alias)
    return [vm.name, *dict.fromkeys(valid)]


def reverse_zones(subnet: IPv4Network) -> list[str]:
    """The in-addr.arpa zones that cover `subnet`, whole octets (a /20 gives 16 /24 zones)."""
    prefix = min(32, max(8, -(-subnet.prefixlen // 8) * 8))
    labels = prefix // 8
    return [
        ".".join(zone.network_address.reverse_pointer.split(".")[4 - labels :])
        for zone in subnet.subnets(new_prefix=prefix)
    ]


def network_config(net: NetworkRecord, directory: Path) -> str:
    """A network's own server: its VMs' names, and DHCP on its bridge (a ptp network has
    none: its guests are configured by the agent, each on a TAP of its own)."""
    dhcp = [
        f"dhcp-range={net.subnet.network_address},static,{net.subnet.netmask},{LEASE_TIME}",
        f"dhcp-hostsdir={directory / 'dhcp'}",
        f"dhcp-leasefile={directory / LEASES}",
        "dhcp-authoritative",
        f"dhcp-option=option:router,{net.gateway}",
        f"dhcp-option=option:dns-server,{net.gateway}",
    ]
    return _config(
        f"network {net.name} ({net.id})",
        directory,
        [net],
        GUEST_PORT,
        [f"hostsdir={directory / 'hosts'}", *(dhcp if net.driver == "bridge" else [])],
    )


def view_config(nets: list[NetworkRecord], port: int, directory: Path, run_dir: Path) -> str:
    """A view: the records of all of `nets`, which it reads from their servers' directories;
    a name on several of them answers with its address on the asker's network."""
    hosts = [f"hostsdir={network_dir(run_dir, net.id) / 'hosts'}" for net in nets]
    names = "+".join(net.name for net in nets)
    return _config(f"view of {names}", directory, nets, port, [*hosts, "localise-queries"])


def configured_port(conf_path: Path) -> int | None:
    """The port a written config makes its server listen on."""
    with contextlib.suppress(OSError):
        for line in conf_path.read_text().splitlines():
            if line.startswith("port="):
                return int(line.removeprefix("port="))
    return None


def _config(
    what: str, directory: Path, nets: list[NetworkRecord], port: int, extra: list[str]
) -> str:
    lines = [
        f"# hyprd's DNS server for the {what}; hyprd writes, starts and supervises it",
        f"pid-file={directory / PID_FILE}",
        f"log-facility={directory / LOG_FILE}",
        # Stay root, as aardvark-dns does: hyprd's run directory need not be readable by
        # nobody, and dnsmasq re-reads its hosts directories after start-up.
        "user=root",
        "bind-interfaces",
        *(f"listen-address={net.gateway}" for net in nets),
        f"port={port}",
        "no-hosts",  # the host's /etc/hosts is not the VMs' business
        "domain-needed",  # a bare name is a VM's or nobody's: never forwarded
        f"local=/{DOMAIN}/",
        *(f"local=/{zone}/" for net in nets for zone in reverse_zones(net.subnet)),
    ]
    if all(net.internal for net in nets):
        lines.append("no-resolv")
    else:
        lines.append("resolv-file=/etc/resolv.conf")
    return "\n".join([*lines, *extra, ""])
