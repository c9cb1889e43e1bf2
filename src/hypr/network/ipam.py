"""IP address management: the allocation logic over the pools of hypr.state.ipam.

The pool of a network is kept as a table of free ranges. Allocating takes the head of the
lowest range and releasing merges the address back with its neighbours; each is a couple of
indexed lookups, so an allocation costs the same in an empty /16 and in an almost full one.
The network, broadcast and gateway addresses are never in the pool. Callers run these
methods inside `Database.transaction()`; the primary key on allocations is the last line
of defence against handing out one address twice.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import NoReturn

from hypr.errors import Conflict, Exhausted, InvalidArgument
from hypr.network.drivers import BridgeDriver
from hypr.state.db import Database
from hypr.state.ipam import IpamRepository
from hypr.state.networks import NetworkRepository


class Ipam:
    """Allocate, reserve and release addresses of hypr networks."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.rows = IpamRepository(db)
        self.networks = NetworkRepository(db)

    def create_pool(self, network_id: str, subnet: IPv4Network, gateway: IPv4Address) -> None:
        """Fill the pool of a new bridge network with every host address but the gateway."""
        self.add_pool(network_id, BridgeDriver().pool(subnet, gateway))

    def add_pool(self, network_id: str, ranges: list[tuple[int, int]]) -> None:
        """Fill the pool of a new network with the free ranges its driver gives (a ptp
        network's are single guest addresses, one per /30)."""
        self.rows.add_ranges(network_id, ranges)

    def allocate(self, network_id: str, owner: str) -> IPv4Address:
        """Hand out the lowest free address of the network (of its IP range, if it has
        one: requested addresses may lie anywhere in the subnet, as in Docker)."""
        with self.db.transaction():
            net = self.networks.find(network_id)
            low = 0
            if net is not None and net.ip_range is not None:
                low = int(net.ip_range.network_address)
                high = int(net.ip_range.broadcast_address)
                lowest = self.rows.lowest_range_within(network_id, low, high)
            else:
                lowest = self.rows.lowest_range(network_id)
            if lowest is None:
                raise Exhausted(f"address pool exhausted for network {self._name(network_id)}")
            first, last = lowest
            value = max(first, low)
            self._take(network_id, first, last, value, owner)
            return IPv4Address(value)

    def reserve(self, network_id: str, address: IPv4Address, owner: str) -> IPv4Address:
        """Hand out one requested address, if it is in the pool and free."""
        value = int(address)
        with self.db.transaction():
            found = self.rows.range_from_below(network_id, value)
            if found is None or found[1] < value:
                self._explain_unavailable(network_id, address)
            self._take(network_id, found[0], found[1], value, owner)
            return address

    def release(self, network_id: str, address: IPv4Address) -> None:
        """Return an address to the pool, merging it with adjacent free ranges."""
        value = int(address)
        with self.db.transaction():
            if not self.rows.delete_allocation(network_id, value):
                return
            below = self.rows.range_ending_at(network_id, value - 1)
            above = self.rows.range_starting_at(network_id, value + 1)
            if above is not None:
                self.rows.delete_range(network_id, value + 1)
            last = above if above is not None else value
            if below is not None:
                self.rows.move_range_end(network_id, below, last)
            else:
                self.rows.add_ranges(network_id, [(value, last)])

    def release_owner(self, owner: str) -> None:
        """Release every address held by `owner` (a VM NIC), on every network."""
        with self.db.transaction():
            for network_id, address in self.rows.held_by(owner):
                self.release(network_id, IPv4Address(address))

    def allocations(self, network_id: str) -> dict[IPv4Address, str]:
        """Addresses in use on a network, with their owners."""
        return {IPv4Address(a): owner for a, owner in self.rows.allocations(network_id).items()}

    def allocated_count(self, network_id: str) -> int:
        """How many addresses of the network are handed out."""
        return self.rows.allocated_count(network_id)

    def free_count(self, network_id: str) -> int:
        """How many addresses the pool can still give."""
        return self.rows.free_count(network_id)

    def _take(self, network_id: str, first: int, last: int, value: int, owner: str) -> None:
        """Remove `value` from the free range [first, last] and record its owner."""
        if value == first and first < last:  # the common case: shrink the range in place
            self.rows.move_range_start(network_id, first, value + 1)
        else:
            self.rows.delete_range(network_id, first)
            self.rows.add_ranges(
                network_id,
                [(lo, hi) for lo, hi in ((first, value - 1), (value + 1, last)) if lo <= hi],
            )
        self.rows.add_allocation(network_id, value, owner)

    def _explain_unavailable(self, network_id: str, address: IPv4Address) -> NoReturn:
        net = self.networks.find(network_id)
        if net is None:
            raise Conflict(f"address {address} is not available on network {network_id}")
        subnet, name = net.subnet, net.name
        if address not in subnet:
            raise InvalidArgument(f"address {address} is not in subnet {subnet} of {name}")
        if address == net.gateway:
            raise InvalidArgument(f"address {address} is the gateway of network {name}")
        if address in (subnet.network_address, subnet.broadcast_address):
            raise InvalidArgument(f"address {address} is not a host address of {subnet}")
        raise Conflict(f"address {address} is already in use on network {name}")

    def _name(self, network_id: str) -> str:
        net = self.networks.find(network_id)
        return net.name if net is not None else network_id
