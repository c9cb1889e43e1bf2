"""View servers: DNS for VMs on several networks.

A VM sees only the VMs that share a network with it, as with Docker's embedded DNS. A VM on
one network asks its network's server, which knows that network only. A VM on several
networks would ask only its first nameserver, so each set of networks that some running VM
joins gets a "view" server that reads the records of all of them, listens on an extra port
of their gateways and, with --localise-queries, answers a name that has addresses on
several of them with the one on the network the query came in on. The firewall sends the
DNS queries of such VMs (by source address) to their view's port.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from hypr.network.dns_config import configured_port, view_config
from hypr.network.dnsmasq import Dnsmasq
from hypr.network.firewall import DnsSteeringDriver
from hypr.state.networks import NetworkRecord
from hypr.state.vms import VmRecord

log = logging.getLogger(__name__)

VIEW_PORTS = range(41004, 41200)

NetworkLookup = Callable[[str], NetworkRecord | None]


@dataclass(frozen=True)
class ServerStatus:
    """One server, as `hypr dns` shows it; `pid` is None while it is not running."""

    networks: list[NetworkRecord]
    port: int
    pid: int | None

    @property
    def forwards(self) -> bool:
        return not all(net.internal for net in self.networks)


@dataclass
class _View:
    networks: list[NetworkRecord]
    port: int
    server: Dnsmasq


class DnsViews:
    """Runs the view servers the running VMs need and steers their queries there."""

    def __init__(self, run_dir: Path, firewall: DnsSteeringDriver) -> None:
        self.run_dir = run_dir
        self.firewall = firewall
        self.views: dict[tuple[str, ...], _View] = {}
        self.steered: dict[IPv4Address, int] = {}

    @property
    def servers(self) -> list[Dnsmasq]:
        return [view.server for view in self.views.values()]

    def status(self) -> list[ServerStatus]:
        return [
            ServerStatus(view.networks, view.port, view.server.pid if view.server.running else None)
            for view in self.views.values()
        ]

    async def sync(self, active: Iterable[VmRecord], network: NetworkLookup) -> None:
        """Run the view servers that the running multi-homed VMs need, steer those VMs'
        queries to them, and stop the views nobody needs any more."""
        wanted: dict[tuple[str, ...], list[VmRecord]] = {}
        for vm in active:
            key = tuple(sorted({nic.network_id for nic in vm.nics if nic.address is not None}))
            if len(key) > 1:
                wanted.setdefault(key, []).append(vm)
        for key in wanted:
            if key not in self.views:
                await self._start(key, network)
        steer = {
            nic.address: self.views[key].port
            for key, vms in wanted.items()
            if key in self.views
            for vm in vms
            for nic in vm.nics
            if nic.address is not None
        }
        gone = [address for address, port in self.steered.items() if steer.get(address) != port]
        self.firewall.unsteer_dns(gone)
        for address in gone:
            del self.steered[address]
        new = {address: port for address, port in steer.items() if address not in self.steered}
        self.firewall.steer_dns(new)
        self.steered.update(new)
        for key in [key for key in self.views if key not in wanted]:
            view = self.views.pop(key)
            self.firewall.remove_dns_view(view.port)
            await view.server.stop()
            shutil.rmtree(view.server.directory, ignore_errors=True)

    async def _start(self, key: tuple[str, ...], network: NetworkLookup) -> None:
        nets = sorted(
            (net for net in map(network, key) if net is not None),
            key=lambda net: (net.created, net.name),  # as `network ls` lists them
        )
        names = "+".join(net.name for net in nets)
        digest = hashlib.sha256(",".join(key).encode()).hexdigest()[:12]
        directory = self.run_dir / "dns" / f"view-{digest}"
        server = Dnsmasq(directory, f"view {names}")
        port = self._port(server, nets)
        if port is None:
            log.error("no free port in %s for the DNS view of %s", VIEW_PORTS, names)
            return
        await server.ensure(view_config(nets, port, directory, self.run_dir))
        self.firewall.add_dns_view(port)
        self.views[key] = _View(nets, port, server)

    def _port(self, server: Dnsmasq, nets: list[NetworkRecord]) -> int | None:
        """The port of the view's running server if it has one, else the first free one."""
        if server.adoptable:
            configured = configured_port(server.conf_path)
            if configured is not None:
                return configured
        taken = {view.port for view in self.views.values()}
        for port in VIEW_PORTS:
            if port not in taken and _bindable([net.gateway for net in nets], port):
                return port
        return None


def _bindable(addresses: Iterable[IPv4Address], port: int) -> bool:
    """Whether UDP and TCP `port` are free on every address (nothing else bound them)."""
    for address in addresses:
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            with socket.socket(socket.AF_INET, kind) as sock:
                try:
                    sock.bind((str(address), port))
                except OSError:
                    return False
    return True
