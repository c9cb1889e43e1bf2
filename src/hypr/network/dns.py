"""DNS (service discovery) and DHCP for VMs: one dnsmasq per network, as libvirt does.

A network's server listens on its gateway, port 53, where the guests' resolv.conf points
(the firewall brings port 41003 there too). It answers `<vm>.hypr` and `<vm>` with the
address of each VM running on the network, PTR for those addresses and an empty answer for
AAAA; it forwards other names to the resolvers in hyprd's /etc/resolv.conf, except on
--internal networks; and it serves DHCP only to reserved MACs, each reserved the address
IPAM gave it, so a guest gets the same address by DHCP as by static configuration.

Records are files in directories dnsmasq watches (--hostsdir, --dhcp-hostsdir), one per VM
and network. dnsmasq 2.90 reads a new or changed hosts file at once and drops the names of
a changed or deleted one, so a record appears when its VM starts and goes when it stops
without a restart. A DHCP reservation is only ever added that way: dropping one needs a
SIGHUP, sent when a VM is removed.

Scoping, as Docker's embedded DNS: a VM sees only the VMs that share a network with it. A VM
on one network asks its network's server, which knows that network only. A VM on several
networks would ask only its first nameserver, so each set of networks that some running VM
joins gets a "view" server that reads the records of all of them, listens on an extra port
of their gateways and, with --localise-queries, answers a name that has addresses on
several of them with the one on the network the query came in on. The firewall sends the
DNS queries of such VMs (by source address) to their view's port.

Files, under $HYPR_RUN_DIR/dns/ (short, for short paths):
  <network id[:12]>/  dnsmasq.conf, .pid, .log, leases, hosts/<vm>, dhcp/<vm>
  view-<hash>/        dnsmasq.conf, .pid, .log
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import os
import re
import shutil
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from hypr.errors import Conflict, NotFound
from hypr.network.dnsmasq import LOG_FILE, PID_FILE, Dnsmasq, write_atomic
from hypr.network.firewall import DnsSteeringDriver
from hypr.network.manager import NetworkManager
from hypr.state.db import Database
from hypr.state.networks import NetworkRecord
from hypr.state.vms import NicRecord, PublishRequest, VmRecord

log = logging.getLogger(__name__)

DOMAIN = "hypr"
GUEST_PORT = 53
HOST_PORT = 41003  # as the HYPR seed says; the firewall redirects it to port 53
VIEW_PORTS = range(41004, 41200)
LEASES = "leases"
LEASE_TIME = "1h"
RESOLVED_API = Path("/run/systemd/resolve/io.systemd.Resolve")
_DNS_NAME = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9_-]{1,63}(?<!-))*$")


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


def network_dir(run_dir: Path, network_id: str) -> Path:
    return run_dir / "dns" / network_id[:12]


def write_record(hosts_dir: Path, key: str, names: Iterable[str], address: IPv4Address) -> None:
    """One VM's names on one network, as the file dnsmasq reads from its hosts directory:
    each as `<name>.hypr` and bare; the first is what PTR answers."""
    fields = " ".join(f"{name}.{DOMAIN} {name}" for name in names)
    write_atomic(hosts_dir / key, f"{address} {fields}\n")


def reverse_zones(subnet: IPv4Network) -> list[str]:
    """The in-addr.arpa zones that cover `subnet`, whole octets (a /20 gives 16 /24 zones)."""
    prefix = min(32, max(8, -(-subnet.prefixlen // 8) * 8))
    labels = prefix // 8
    return [
        ".".join(zone.network_address.reverse_pointer.split(".")[4 - labels :])
        for zone in subnet.subnets(new_prefix=prefix)
    ]


def network_config(net: NetworkRecord, directory: Path) -> str:
    """A network's own server: its VMs' names, and DHCP on its bridge."""
    return _config(
        f"network {net.name} ({net.id})",
        directory,
        [net],
        GUEST_PORT,
        [
            f"hostsdir={directory / 'hosts'}",
            f"dhcp-range={net.subnet.network_address},static,{net.subnet.netmask},{LEASE_TIME}",
            f"dhcp-hostsdir={directory / 'dhcp'}",
            f"dhcp-leasefile={directory / LEASES}",
            "dhcp-authoritative",
            f"dhcp-option=option:router,{net.gateway}",
            f"dhcp-option=option:dns-server,{net.gateway}",
        ],
    )


def view_config(nets: list[NetworkRecord], port: int, directory: Path, run_dir: Path) -> str:
    """A view: the records of all of `nets`, which it reads from their servers' directories;
    a name on several of them answers with its address on the asker's network."""
    hosts = [f"hostsdir={network_dir(run_dir, net.id) / 'hosts'}" for net in nets]
    names = "+".join(net.name for net in nets)
    return _config(f"view of {names}", directory, nets, port, [*hosts, "localise-queries"])


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


class DnsService:
    """Follows networks and VMs: starts the servers, writes the records, steers the views."""

    def __init__(
        self,
        run_dir: Path,
        db: Database,
        networks: NetworkManager,
        firewall: DnsSteeringDriver,
    ) -> None:
        self.run_dir = run_dir
        self.root = run_dir / "dns"
        self.db = db
        self.networks = networks
        self.firewall = firewall
        self.servers: dict[str, Dnsmasq] = {}
        self.views: dict[tuple[str, ...], _View] = {}
        self.active: dict[str, VmRecord] = {}  # VMs with records: started, not yet stopped
        self.steered: dict[IPv4Address, int] = {}
        self.resolved = systemd_resolved_here()
        self._lock = asyncio.Lock()

    # --- network hooks -------------------------------------------------------------------

    async def network_added(self, net: NetworkRecord) -> None:
        async with self._lock:
            await self._ensure_server(net)
        await self._configure_resolved(net)

    async def network_removed(self, net: NetworkRecord) -> None:
        async with self._lock:
            for vm_id, vm in self.active.items():
                nics = tuple(nic for nic in vm.nics if nic.network_id != net.id)
                self.active[vm_id] = dataclasses.replace(vm, nics=nics)
            await self._sync_views()
            server = self.servers.pop(net.id, None)
            if server is not None:
                await server.stop()
            shutil.rmtree(self._dir(net.id), ignore_errors=True)

    # --- VM hooks ------------------------------------------------------------------------

    def vm_created(self, vm: VmRecord, publish: PublishRequest) -> None:
        """Refuse a name that differs from another VM's only in case: DNS ignores case, so
        both VMs would answer to it."""
        row = self.db.conn.execute(
            "SELECT name FROM vms WHERE name = ? COLLATE NOCASE AND id != ?", (vm.name, vm.id)
        ).fetchone()
        if row is not None:
            raise Conflict(
                f"the name {vm.name} is already in use by VM {row[0]} (DNS names ignore case)"
            )

    async def vm_starting(self, vm: VmRecord) -> None:
        """Records and reservations in place before the guest boots and asks for them."""
        async with self._lock:
            self.active[vm.id] = vm
            for nic in vm.nics:
                net = self._network(nic.network_id)
                if net is None or nic.address is None:
                    continue
                write_record(self._dir(net.id) / "hosts", _key(vm.id), _names(vm, nic), nic.address)
                self._reserve(net, _key(vm.id), f"{nic.mac},{nic.address}\n")
            await self._sync_views()

    async def vm_stopped(self, vm: VmRecord) -> None:
        async with self._lock:
            self.active.pop(vm.id, None)
            for net_id in self.servers:
                (self._dir(net_id) / "hosts" / _key(vm.id)).unlink(missing_ok=True)
            for nic in vm.nics:
                net = self._network(nic.network_id)
                if net is not None:
                    await self._release_lease(net, nic.mac)
            await self._sync_views()

    async def vm_removed(self, vm: VmRecord) -> None:
        async with self._lock:
            for net_id, server in self.servers.items():
                with contextlib.suppress(FileNotFoundError):
                    (self._dir(net_id) / "dhcp" / _key(vm.id)).unlink()
                    server.reload()

    async def reconcile(self, running: list[VmRecord]) -> None:
        """At daemon start: one server per network (adopted or restarted), records of the
        running VMs only, the views they need, and nothing else."""
        async with self._lock:
            nets = self.networks.all()
            for net in nets:
                await self._ensure_server(net)
            self.active = {vm.id: vm for vm in running}
            existing = {_key(row[0]) for row in self.db.conn.execute("SELECT id FROM vms")}
            for net in nets:
                await self._reconcile_records(net, existing)
            await self._sync_views()
            await self._stop_strays()
        for net in nets:
            await self._configure_resolved(net)

    def close(self) -> None:
        """hyprd exits: the servers keep answering, and the next hyprd adopts them."""
        for server in [*self.servers.values(), *(view.server for view in self.views.values())]:
            server.detach()

    # --- queries -------------------------------------------------------------------------

    def status(self) -> tuple[list[ServerStatus], list[ServerStatus]]:
        """(network servers, view servers)."""
        networks = []
        for net in self.networks.all():
            server = self.servers.get(net.id)
            pid = server.pid if server is not None and server.running else None
            networks.append(ServerStatus([net], GUEST_PORT, pid))
        views = [
            ServerStatus(view.networks, view.port, view.server.pid if view.server.running else None)
            for view in self.views.values()
        ]
        return networks, views

    # --- internals -----------------------------------------------------------------------

    def _dir(self, network_id: str) -> Path:
        return network_dir(self.run_dir, network_id)

    def _network(self, network_id: str) -> NetworkRecord | None:
        with contextlib.suppress(NotFound):
            return self.networks.get(network_id)
        return None

    async def _ensure_server(self, net: NetworkRecord) -> None:
        directory = self._dir(net.id)
        for sub in ("hosts", "dhcp"):
            (directory / sub).mkdir(parents=True, exist_ok=True)
        server = self.servers.get(net.id) or Dnsmasq(directory, f"network {net.name}")
        await server.ensure(network_config(net, directory))
        self.servers[net.id] = server

    def _reserve(self, net: NetworkRecord, key: str, line: str) -> None:
        """Write a DHCP reservation; one that changed needs a reload to drop the old one."""
        path = self._dir(net.id) / "dhcp" / key
        try:
            old: str | None = path.read_text()
        except FileNotFoundError:
            old = None
        if old == line:
            return
        write_atomic(path, line)
        if old is not None:
            self.servers[net.id].reload()

    async def _reconcile_records(self, net: NetworkRecord, existing: set[str]) -> None:
        """Hosts files for exactly the running VMs, reservations for existing VMs only, and
        leases only for running ones."""
        directory = self._dir(net.id)
        wanted = {
            _key(vm.id): (_names(vm, nic), nic.mac, nic.address)
            for vm in self.active.values()
            for nic in vm.nics
            if nic.network_id == net.id and nic.address is not None
        }
        for path in (directory / "hosts").iterdir():
            if path.name not in wanted:
                path.unlink()
        for key, (names, mac, address) in wanted.items():
            write_record(directory / "hosts", key, names, address)
            self._reserve(net, key, f"{mac},{address}\n")
        stale = [path for path in (directory / "dhcp").iterdir() if path.name not in existing]
        for path in stale:
            path.unlink()
        if stale:
            self.servers[net.id].reload()
        live_macs = {mac for _, mac, _ in wanted.values()}
        for mac in _leases(directory / LEASES).keys() - live_macs:
            await self._release_lease(net, mac)

    async def _release_lease(self, net: NetworkRecord, mac: str) -> None:
        """Tell the server that the guest with `mac` let its lease go (dhcp_release sends the
        DHCPRELEASE a guest would); its address stays reserved for the VM."""
        address = _leases(self._dir(net.id) / LEASES).get(mac)
        if address is None:
            return
        try:
            proc = await asyncio.create_subprocess_exec(
                "dhcp_release",
                net.bridge,
                address,
                mac,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except FileNotFoundError:
            log.warning("cannot release the DHCP lease of %s: dhcp_release is not installed", mac)
            return
        _, stderr = await proc.communicate()
        if proc.returncode != 0:
            log.warning("dhcp_release %s %s: %s", net.bridge, address, stderr.decode().strip())

    async def _sync_views(self) -> None:
        """Run the view servers that the running multi-homed VMs need, steer those VMs'
        queries to them, and stop the views nobody needs any more."""
        wanted: dict[tuple[str, ...], list[VmRecord]] = {}
        for vm in self.active.values():
            key = tuple(sorted({nic.network_id for nic in vm.nics if nic.address is not None}))
            if len(key) > 1:
                wanted.setdefault(key, []).append(vm)
        for key in wanted:
            if key not in self.views:
                await self._start_view(key)
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

    async def _start_view(self, key: tuple[str, ...]) -> None:
        nets = sorted(
            (net for net in map(self._network, key) if net is not None),
            key=lambda net: (net.created, net.name),  # as `network ls` lists them
        )
        names = "+".join(net.name for net in nets)
        directory = self.root / f"view-{hashlib.sha256(','.join(key).encode()).hexdigest()[:12]}"
        server = Dnsmasq(directory, f"view {names}")
        port = self._view_port(server, nets)
        if port is None:
            log.error("no free port in %s for the DNS view of %s", VIEW_PORTS, names)
            return
        await server.ensure(view_config(nets, port, directory, self.run_dir))
        self.firewall.add_dns_view(port)
        self.views[key] = _View(nets, port, server)

    def _view_port(self, server: Dnsmasq, nets: list[NetworkRecord]) -> int | None:
        """The port of the view's running server if it has one, else the first free one."""
        if server.adoptable:
            configured = _configured_port(server.conf_path)
            if configured is not None:
                return configured
        taken = {view.port for view in self.views.values()}
        for port in VIEW_PORTS:
            if port not in taken and _bindable([net.gateway for net in nets], port):
                return port
        return None

    async def _stop_strays(self) -> None:
        """Stop the servers of networks and views that are gone (e.g. a view whose VMs died
        while hyprd was down) and remove their files."""
        if not self.root.is_dir():
            return
        known = {server.directory for server in self.servers.values()}
        known |= {view.server.directory for view in self.views.values()}
        for directory in self.root.iterdir():
            if directory.is_dir() and directory not in known:
                log.info("stopping the stale DNS server in %s", directory)
                await Dnsmasq(directory, directory.name).stop()
                shutil.rmtree(directory, ignore_errors=True)

    async def _configure_resolved(self, net: NetworkRecord) -> None:
        """Send the host's `.hypr` queries to the bridge's server, where systemd-resolved runs."""
        if not self.resolved:
            log.debug("systemd-resolved does not serve this namespace; not configuring it")
            return
        for args in (("dns", net.bridge, str(net.gateway)), ("domain", net.bridge, f"~{DOMAIN}")):
            proc = await asyncio.create_subprocess_exec(
                "resolvectl",
                *args,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            _, stderr = await proc.communicate()
            if proc.returncode != 0:
                log.warning("resolvectl %s: %s", " ".join(args), stderr.decode().strip())


def systemd_resolved_here() -> bool:
    """True where systemd-resolved serves hyprd's network namespace: it runs, and hyprd is in
    the namespace of PID 1 (resolved keys per-link settings by interface index, and an index
    names another interface in any other namespace)."""
    if not RESOLVED_API.exists() or shutil.which("resolvectl") is None:
        return False
    try:
        ours, init = os.stat("/proc/self/ns/net"), os.stat("/proc/1/ns/net")
    except OSError:
        return False
    return (ours.st_dev, ours.st_ino) == (init.st_dev, init.st_ino)


def _key(vm_id: str) -> str:
    return vm_id[:16]


def _names(vm: VmRecord, nic: NicRecord) -> list[str]:
    """The VM's name, then its aliases on this NIC's network (compose service names); an
    alias that is no DNS name is left out rather than let into dnsmasq's hosts syntax."""
    aliases = vm.spec.aliases[nic.idx] if nic.idx < len(vm.spec.aliases) else []
    valid = [alias for alias in aliases if _DNS_NAME.match(alias) and alias != vm.name]
    for alias in set(aliases) - set(valid) - {vm.name}:
        log.warning("VM %s: alias %r is not a DNS name; not publishing it", vm.name, alias)
    return [vm.name, *dict.fromkeys(valid)]


def _leases(path: Path) -> dict[str, str]:
    """MAC -> address of dnsmasq's lease file (`expiry mac address hostname client-id`)."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return {}
    return {fields[1]: fields[2] for fields in map(str.split, lines) if len(fields) >= 3}


def _configured_port(conf_path: Path) -> int | None:
    with contextlib.suppress(OSError):
        for line in conf_path.read_text().splitlines():
            if line.startswith("port="):
                return int(line.removeprefix("port="))
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
