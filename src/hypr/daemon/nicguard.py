"""Anti-spoofing: the service that lets each running VM's TAPs pass only its own MAC and
addresses (a VmObserver, and a NetworkObserver for networks removed under running VMs).

The firewall holds the rules; this service only adds a TAP's elements when its VM starts
(after the TAPs exist, before the guest boots) and deletes them when it stops. It keeps
what it added by TAP name, because TAP names are reused: a TAP left over from a NIC that a
forced network removal took away must never lend its old MAC and address to the next VM
that gets the same name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address

from hypr.network.firewall import FirewallError, NicGuardDriver
from hypr.state.networks import NetworkRecord
from hypr.state.vms import PublishRequest, VmRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Guarded:
    vm_id: str
    network_id: str
    mac: str
    address: IPv4Address | None
    routed: bool  # a ptp network's TAP


class NicGuard:
    """Keeps the firewall's per-TAP elements equal to the running VMs' NICs."""

    def __init__(
        self, firewall: NicGuardDriver, network_of: Callable[[str], NetworkRecord | None]
    ) -> None:
        self.firewall = firewall
        self.network_of = network_of
        self._taps: dict[str, _Guarded] = {}

    # --- VmObserver ----------------------------------------------------------------------

    def vm_created(self, vm: VmRecord, publish: PublishRequest) -> None:
        """Nothing to claim: a NIC is guarded only while its TAP exists."""

    async def vm_starting(self, vm: VmRecord) -> None:
        self._allow(vm)

    async def vm_stopped(self, vm: VmRecord) -> None:
        self._forget(lambda guarded: guarded.vm_id == vm.id)

    async def vm_removed(self, vm: VmRecord) -> None:
        self._forget(lambda guarded: guarded.vm_id == vm.id)

    async def vm_renamed(self, old: VmRecord, vm: VmRecord) -> None:
        """Nothing to do: NICs are guarded by TAP and address."""

    async def reconcile(self, running: list[VmRecord]) -> None:
        """Guard the adopted VMs again: start-up rebuilt the firewall without them."""
        self._taps.clear()
        for vm in running:
            self._allow(vm)

    # --- NetworkObserver -----------------------------------------------------------------

    async def network_added(self, net: NetworkRecord) -> None:
        """Nothing to do: NICs are guarded per VM, when it starts."""

    async def network_removed(self, net: NetworkRecord) -> None:
        """A forced removal deleted the TAPs of the network's NICs: drop their elements."""
        self._forget(lambda guarded: guarded.network_id == net.id)

    # --- internals -----------------------------------------------------------------------

    def _allow(self, vm: VmRecord) -> None:
        for nic in vm.nics:
            if nic.tap is None:
                continue
            if nic.tap in self._taps:  # a reused name: its elements still point at the old NIC
                self._drop(nic.tap)
            net = self.network_of(nic.network_id)
            routed = net is not None and net.driver == "ptp"
            self.firewall.allow_nic(nic.tap, nic.mac, nic.address, routed)
            self._taps[nic.tap] = _Guarded(vm.id, nic.network_id, nic.mac, nic.address, routed)

    def _forget(self, which: Callable[[_Guarded], bool]) -> None:
        for tap in [tap for tap, guarded in self._taps.items() if which(guarded)]:
            self._drop(tap)

    def _drop(self, tap: str) -> None:
        guarded = self._taps.pop(tap)
        try:
            self.firewall.forget_nic(tap, guarded.mac, guarded.address, guarded.routed)
        except FirewallError as exc:  # the elements are gone already; keep going
            log.warning("cannot drop the anti-spoofing elements of %s: %s", tap, exc)
