"""Published ports (`-p`) and the SSH pool (`--ssh`): the service that follows VMs for them.

A forward is claimed as a row in the transaction that creates the VM, so two VMs can never
get one host port, and the row stays until the VM is removed (an SSH pool port too). The
kernel side, one map element and one held host socket per port, exists only while the VM
runs: it is made before the guest boots and undone when the hypervisor exits.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from ipaddress import IPv4Address

from hypr.errors import Conflict, Exhausted, HyprError, InvalidArgument
from hypr.network.firewall import FirewallError, ForwardingDriver
from hypr.network.ports import FREE_PORT, bind_host_port, check_host_port, parse_publish
from hypr.state.db import Database
from hypr.state.networks import NetworkRecord, NetworkRepository
from hypr.state.ports import ANY_ADDRESS, PortForward, PortForwardRepository
from hypr.state.vms import PublishRequest, VmRecord

log = logging.getLogger(__name__)

SSH_GUEST_PORT = 22
# Where `-P` finds host ports: Linux's default ephemeral range, as Docker does.
PUBLISH_ALL_POOL = range(32768, 61000)


@dataclass
class _Published:
    """The kernel side of a running VM's forwards."""

    target: IPv4Address
    forwards: list[PortForward]
    sockets: list[socket.socket]


class PortForwarder:
    """Claims host ports for VMs and publishes them while the VMs run (a VmObserver, and a
    NetworkObserver for networks removed under running VMs)."""

    def __init__(
        self, db: Database, firewall: ForwardingDriver, ssh_pool: range, max_range: int
    ) -> None:
        self.max_range = max_range
        self.rows = PortForwardRepository(db)
        self.networks = NetworkRepository(db)
        self.firewall = firewall
        self.ssh_pool = ssh_pool
        self._published: dict[str, _Published] = {}

    def forwards(self, vm_id: str) -> list[PortForward]:
        return self.rows.for_vm(vm_id)

    def forwards_by_vm(self) -> dict[str, list[PortForward]]:
        """Every VM's forwards, by VM id (a VM without any has no entry)."""
        return self.rows.by_vm()

    # --- VmObserver ----------------------------------------------------------------------

    def vm_created(self, vm: VmRecord, publish: PublishRequest) -> None:
        """Validate and claim every port the request publishes, or refuse the whole VM."""
        forwards = [fwd for spec in publish.ports for fwd in parse_publish(spec, self.max_range)]
        exposed = vm.spec.exposed_ports if publish.publish_all else []
        if not forwards and not publish.ssh and not exposed:
            return
        if self.target(vm) is None:
            raise InvalidArgument(
                f"VM {vm.name} cannot publish ports: it is on no network, or only on "
                "--internal ones"
            )
        for fwd in forwards:
            if fwd.host_port == FREE_PORT:  # `-p 80`: a free port, as -P picks them
                fwd = self._free_port(PUBLISH_ALL_POOL, fwd.protocol, fwd.guest_port, fwd.host_ip)
                self.rows.add(vm.id, fwd)
                continue
            holder = self.rows.holder(fwd)
            if holder == vm.name:
                raise InvalidArgument(f"host port {fwd.host} is published twice")
            if holder is not None:
                raise Conflict(f"host port {fwd.host} is already published by VM {holder}")
            check_host_port(fwd)
            self.rows.add(vm.id, fwd)
        if publish.ssh:
            self.rows.add(vm.id, self._free_port(self.ssh_pool, "tcp", SSH_GUEST_PORT, ssh=True))
        mapped = {(fwd.guest_port, fwd.protocol) for fwd in forwards}
        for spec in exposed:  # -P: what -p did not publish already
            number, _, protocol = spec.partition("/")
            if (int(number), protocol) not in mapped:
                self.rows.add(vm.id, self._free_port(PUBLISH_ALL_POOL, protocol, int(number)))

    async def vm_starting(self, vm: VmRecord) -> None:
        self._publish(vm, strict=True)

    async def vm_stopped(self, vm: VmRecord) -> None:
        self._unpublish(vm.id)

    async def vm_removed(self, vm: VmRecord) -> None:
        """The rows went with the VM's (ON DELETE CASCADE); the kernel side went at its stop,
        and is dropped here too so that nothing can outlive the VM."""
        self._unpublish(vm.id)

    async def vm_renamed(self, old: VmRecord, vm: VmRecord) -> None:
        """Nothing to do: forwards follow ids."""

    async def reconcile(self, running: list[VmRecord]) -> None:
        """Publish the ports of adopted VMs again: start-up rebuilt the table without them."""
        for vm in running:
            self._publish(vm, strict=False)

    # --- NetworkObserver -----------------------------------------------------------------

    async def network_added(self, net: NetworkRecord) -> None:
        """Nothing to do: ports are published per VM, when it starts."""

    async def network_removed(self, net: NetworkRecord) -> None:
        """Close the ports that lead into a network removed with --force (its VMs are
        detached by now), before its addresses can come back to other VMs."""
        for vm_id, published in list(self._published.items()):
            if published.target in net.subnet:
                self._unpublish(vm_id)

    # --- internals -----------------------------------------------------------------------

    def target(self, vm: VmRecord) -> IPv4Address | None:
        """Where published ports lead: the address of the VM's first NIC on a network that
        traffic from outside may enter (not --internal)."""
        for nic in vm.nics:
            net = self.networks.find(nic.network_id)
            if net is not None and not net.internal and nic.address is not None:
                return nic.address
        return None

    def _free_port(
        self,
        pool: range,
        protocol: str,
        guest_port: int,
        host_ip: IPv4Address = ANY_ADDRESS,
        ssh: bool = False,
    ) -> PortForward:
        """The lowest port of `pool` that no forward uses and nothing on the host holds
        (the SSH pool for --ssh, the ephemeral range for -P and `-p GUEST_PORT`)."""
        taken = self.rows.ports_in_use(protocol, pool.start, pool.stop - 1)
        for port in pool:
            if port in taken:
                continue
            fwd = PortForward(protocol, host_ip, port, guest_port, ssh=ssh)
            try:
                check_host_port(fwd)
            except Conflict:
                continue
            return fwd
        what = "SSH port pool" if ssh else f"{protocol} port range"
        raise Exhausted(
            f"the {what} {pool.start}-{pool.stop - 1} is exhausted: no free host port left"
        )

    def _publish(self, vm: VmRecord, strict: bool) -> None:
        """Hold the host sockets and add the map elements of a VM's forwards. `strict` makes
        a port that something else took meanwhile an error; otherwise (an adopted VM, whose
        guest already serves) it is logged and the forward still published."""
        forwards = self.rows.for_vm(vm.id)
        if not forwards:
            return
        target = self.target(vm)
        if target is None:
            log.warning("VM %s has no reachable network left: its ports stay closed", vm.name)
            return
        sockets: list[socket.socket] = []
        try:
            for fwd in forwards:
                try:
                    sockets.append(bind_host_port(fwd))
                except HyprError as exc:
                    if strict:
                        raise
                    log.warning("VM %s: %s", vm.name, exc.message)
            self.firewall.add_forwards(forwards, target)
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        self._published[vm.id] = _Published(target, forwards, sockets)

    def _unpublish(self, vm_id: str) -> None:
        published = self._published.pop(vm_id, None)
        if published is None:
            return
        try:
            self.firewall.remove_forwards(published.forwards, published.target)
        except FirewallError as exc:  # the VM is gone either way; keep releasing
            log.warning("cannot remove the forwards of VM %s: %s", vm_id[:12], exc)
        finally:
            for sock in published.sockets:
                sock.close()
