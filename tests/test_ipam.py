"""IPAM as pure logic over an in-memory database (the kernel is not involved)."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from hypr.errors import Conflict, Exhausted, InvalidArgument
from hypr.network.ipam import Ipam
from hypr.state.db import Database
from hypr.state.networks import NetworkRecord, NetworkRepository


def make_pool(
    subnet: str, gateway: str | None = None, ip_range: str | None = None
) -> tuple[Ipam, str]:
    db = Database(":memory:")
    db.migrate()
    net = IPv4Network(subnet)
    gw = IPv4Address(gateway) if gateway else net.network_address + 1
    record = NetworkRecord("n" * 64, "net", "bridge", net, gw, "vbr0", False, "now")
    if ip_range is not None:
        record = dataclasses.replace(record, ip_range=IPv4Network(ip_range))
    NetworkRepository(db).add(record)
    ipam = Ipam(db)
    ipam.create_pool(record.id, net, gw)
    return ipam, record.id


def test_never_hands_out_network_broadcast_or_gateway() -> None:
    ipam, net = make_pool("10.1.0.0/29", gateway="10.1.0.3")
    got = [ipam.allocate(net, "vm") for _ in range(5)]
    assert got == [IPv4Address(f"10.1.0.{i}") for i in (1, 2, 4, 5, 6)]
    with pytest.raises(Exhausted, match="address pool exhausted"):
        ipam.allocate(net, "vm")


def test_ip_range_bounds_allocation_not_reservation() -> None:
    """Docker's IPRange: dynamic addresses from the range only, requested ones anywhere."""
    ipam, net = make_pool("10.1.0.0/24", ip_range="10.1.0.252/30")
    assert ipam.allocate(net, "a") == IPv4Address("10.1.0.252")
    assert ipam.reserve(net, IPv4Address("10.1.0.253"), "b") == IPv4Address("10.1.0.253")
    assert ipam.reserve(net, IPv4Address("10.1.0.9"), "c") == IPv4Address("10.1.0.9")
    assert ipam.allocate(net, "d") == IPv4Address("10.1.0.254")
    with pytest.raises(Exhausted):  # .255 is the broadcast: the range is used up
        ipam.allocate(net, "e")
    ipam.release(net, IPv4Address("10.1.0.252"))
    assert ipam.allocate(net, "f") == IPv4Address("10.1.0.252")


def test_release_makes_address_available_again_lowest_first() -> None:
    ipam, net = make_pool("10.1.0.0/24")
    addresses = [ipam.allocate(net, f"vm{i}") for i in range(10)]
    ipam.release(net, addresses[3])
    ipam.release(net, addresses[4])
    assert ipam.allocate(net, "x") == addresses[3]
    assert ipam.free_count(net) == 253 - 10 + 1


def test_reserve_checks_the_request() -> None:
    ipam, net = make_pool("10.1.0.0/24")
    assert ipam.reserve(net, IPv4Address("10.1.0.50"), "a") == IPv4Address("10.1.0.50")
    with pytest.raises(Conflict, match="already in use"):
        ipam.reserve(net, IPv4Address("10.1.0.50"), "b")
    with pytest.raises(InvalidArgument, match="gateway"):
        ipam.reserve(net, IPv4Address("10.1.0.1"), "b")
    with pytest.raises(InvalidArgument, match="not in subnet"):
        ipam.reserve(net, IPv4Address("10.2.0.5"), "b")
    with pytest.raises(InvalidArgument, match="not a host address"):
        ipam.reserve(net, IPv4Address("10.1.0.255"), "b")
    # allocation skips the reserved address
    assert [ipam.allocate(net, "c") for _ in range(48)][-1] == IPv4Address("10.1.0.49")
    assert ipam.allocate(net, "c") == IPv4Address("10.1.0.51")


def test_release_owner_frees_everything_it_holds() -> None:
    ipam, net = make_pool("10.1.0.0/24")
    ipam.allocate(net, "vm-a")
    ipam.allocate(net, "vm-b")
    ipam.allocate(net, "vm-a")
    ipam.release_owner("vm-a")
    assert list(ipam.allocations(net).values()) == ["vm-b"]


class IpamModel(RuleBasedStateMachine):
    """IPAM against a plain set: same answers, and the free ranges stay a partition."""

    def __init__(self) -> None:
        super().__init__()
        self.ipam, self.net = make_pool("10.9.0.0/27", gateway="10.9.0.17")
        hosts = set(IPv4Network("10.9.0.0/27").hosts()) - {IPv4Address("10.9.0.17")}
        self.free = hosts
        self.used: set[IPv4Address] = set()

    @rule()
    def allocate(self) -> None:
        if not self.free:
            with pytest.raises(Exhausted):
                self.ipam.allocate(self.net, "o")
            return
        got = self.ipam.allocate(self.net, "o")
        assert got == min(self.free)
        self.free.remove(got)
        self.used.add(got)

    @precondition(lambda self: bool(self.used))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        address = data.draw(st.sampled_from(sorted(self.used)))
        self.ipam.release(self.net, address)
        self.used.remove(address)
        self.free.add(address)

    @rule(offset=st.integers(0, 31))
    def reserve(self, offset: int) -> None:
        address = IPv4Address("10.9.0.0") + offset
        if address in self.free:
            assert self.ipam.reserve(self.net, address, "o") == address
            self.free.remove(address)
            self.used.add(address)
        else:
            with pytest.raises((Conflict, InvalidArgument)):
                self.ipam.reserve(self.net, address, "o")

    @invariant()
    def agrees(self) -> None:
        assert set(self.ipam.allocations(self.net)) == self.used
        assert self.ipam.free_count(self.net) == len(self.free)
        assert self.ipam.allocated_count(self.net) == len(self.used)


TestIpamModel = IpamModel.TestCase
TestIpamModel.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
