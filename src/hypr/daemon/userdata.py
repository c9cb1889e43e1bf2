"""cloud-init user data in the VM's lifecycle: checked at create, applied at every boot.

At create a user data that cannot be applied is refused before anything is claimed, and
the static addresses of its network section become the NICs' requested addresses, so that
IPAM, DNS names, published ports and the NIC guard agree with what the guest configures.
At boot it becomes the hostname, NIC overrides and `ud.*` lines the agent is given; the
per-instance scripts are sent until a boot that carried them has reached its agent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from hypr.daemon.requests import NetworkAttachment, RunRequest
from hypr.errors import InvalidArgument
from hypr.guest.cloudconfig import UserData, parse_user_data
from hypr.guest.cloudtypes import UserDataError
from hypr.guest.netconfig import NetworkConfig
from hypr.guest.spec import GuestNic
from hypr.guest.userdata import Instance, userdata_lines
from hypr.network.names import check_hostname, now_rfc3339
from hypr.state.sems import VmSems
from hypr.state.vms import VmRecord

log = logging.getLogger(__name__)

SCRIPTS_SEM = "config_scripts_user"  # cloud-init's name for the module that runs them


def read_user_data(text: str) -> UserData:
    """Parse and check user data; a one-line InvalidArgument if it cannot be applied."""
    try:
        data = parse_user_data(text)
    except UserDataError as exc:
        raise InvalidArgument(f"invalid user data: {exc}") from None
    if data.hostname is not None:
        try:
            check_hostname(data.hostname)
        except InvalidArgument as exc:
            raise InvalidArgument(f"invalid user data: {exc.message}") from None
    return data


def with_user_data(req: RunRequest) -> RunRequest:
    """The request with its user data checked, its notes logged, and the addresses its
    network section gives in its NICs' `ip` (MAC-matched entries need the MAC given)."""
    if req.user_data is None:
        return req
    data = read_user_data(req.user_data)
    name = req.name or "(unnamed)"
    for note in data.notes:
        log.warning("user data of VM %s: %s", name, note)
    if data.network is None:
        return req
    attachments = list(req.attachments)
    macs = [attachment.mac for attachment in attachments]
    for entry in data.network.ethernets:
        if entry.mac is not None and entry.mac not in {m.lower() for m in macs if m}:
            raise InvalidArgument(
                f"invalid user data: network.ethernets.{entry.key} matches MAC {entry.mac}, "
                "which no NIC of the VM has (give it with --mac)"
            )
        matched = [i for i, mac in enumerate(macs) if entry.matches(i, mac)]
        if entry.address is None or not matched:
            continue
        if len(matched) > 1:
            raise InvalidArgument(
                f"invalid user data: network.ethernets.{entry.key} gives one address "
                "to several NICs"
            )
        attachments[matched[0]] = _with_ip(attachments[matched[0]], str(entry.address.ip))
    for key in unmatched(data.network, macs):
        log.warning("user data of VM %s: network.ethernets.%s matches no NIC", name, key)
    return req.model_copy(update={"networks": attachments})


def _with_ip(attachment: NetworkAttachment, ip: str) -> NetworkAttachment:
    if attachment.ip is not None and attachment.ip != ip:
        raise InvalidArgument(
            f"invalid user data: its address {ip} on network {attachment.network} "
            f"differs from the requested {attachment.ip}"
        )
    return attachment.model_copy(update={"ip": ip})


def unmatched(network: NetworkConfig, macs: list[str | None]) -> list[str]:
    """The `ethernets` entries that are for none of the VM's NICs."""
    return [
        entry.key
        for entry in network.ethernets
        if not any(entry.matches(i, mac) for i, mac in enumerate(macs))
    ]


@dataclass(frozen=True)
class BootUserData:
    """What one boot tells the guest: the user data applied to the VM's own settings."""

    hostname: str
    nics: list[tuple[str, GuestNic]]  # (TAP, NIC as the agent configures it)
    dns: list[str]
    lines: list[str]  # the `ud.*` lines of /hypr/spec


class UserDataBoot:
    """Applies a VM's user data to each of its boots, and remembers its first one."""

    def __init__(self, sems: VmSems) -> None:
        self.sems = sems

    def for_boot(
        self, vm: VmRecord, hostname: str, nics: list[tuple[str, GuestNic]], dns: list[str]
    ) -> BootUserData:
        if vm.spec.user_data is None:
            return BootUserData(hostname, nics, dns, [])
        data = read_user_data(vm.spec.user_data)
        notes = list(data.notes)
        if data.network is not None:
            nics, dns = _apply_network(data.network, nics, dns)
            macs: list[str | None] = [nic.mac for _, nic in nics]
            notes += [f"network.ethernets.{key} matches no NIC" for key in
                      unmatched(data.network, macs)]  # fmt: skip
        hostname = data.hostname or hostname
        instance = Instance(
            instance_id=vm.id,
            hostname=hostname,
            nics=[nic for _, nic in nics],
            dns=dns,
            first_done=self.sems.done(vm.id, SCRIPTS_SEM),
        )
        lines = userdata_lines(vm.spec.user_data, replace(data, notes=tuple(notes)), instance,
                               now_rfc3339())  # fmt: skip
        return BootUserData(hostname, nics, dns, lines)

    def booted(self, vm: VmRecord) -> None:
        """The agent answered: the per-instance scripts it was given have started."""
        if vm.spec.user_data is not None:
            self.sems.mark(vm.id, SCRIPTS_SEM, now_rfc3339())


def _apply_network(
    network: NetworkConfig, nics: list[tuple[str, GuestNic]], dns: list[str]
) -> tuple[list[tuple[str, GuestNic]], list[str]]:
    """Each NIC as its `ethernets` entry says: DHCP, or its static address and gateway (no
    `gateway4`: no default route, as netplan does), an MTU; name servers replace hypr's."""
    servers: list[str] = []
    applied = []
    for index, (tap, nic) in enumerate(nics):
        entry = network.for_nic(index, nic.mac)
        if entry is not None:
            if entry.dhcp4:
                nic = replace(nic, address=None)
            elif entry.address is not None:
                nic = replace(nic, address=entry.address, gateway=entry.gateway)
            elif entry.gateway is not None:
                nic = replace(nic, gateway=entry.gateway)
            if entry.mtu is not None:
                nic = replace(nic, mtu=entry.mtu)
            servers += [s for s in entry.nameservers if s not in servers]
        applied.append((tap, nic))
    return applied, servers or dns
