"""The firewall really forwards, isolates and masquerades.

Namespaces stand in for endpoints: each is plugged into a hypr network by a veth whose host
end is a port of the network's bridge. An "upstream" namespace sits behind an uplink veth of
the daemon's namespace and has no route back to any hypr subnet, so only masquerade lets it
answer.
"""

from __future__ import annotations

from collections.abc import Callable

from hypr.sandbox import UPLINK_ADDRESS, UPSTREAM_ADDRESS, Hyprd, add_upstream, in_ns, plug_endpoint


def reaches(ns: str, address: str) -> bool:
    return in_ns(ns, "ping", "-c", "1", "-W", "1", address, check=False).returncode == 0


def test_isolation_internal_and_masquerade(hyprd: Hyprd, make_netns: Callable[[], str]) -> None:
    hyprd.ok("network", "create", "blue", "--subnet", "10.89.0.0/24")
    hyprd.ok("network", "create", "sealed", "--internal", "--subnet", "10.90.0.0/24")

    upstream = make_netns()
    add_upstream(hyprd.netns, upstream)

    a1, a2, b1, sealed = make_netns(), make_netns(), make_netns(), make_netns()
    sealed2 = make_netns()
    plug_endpoint(hyprd.netns, a1, "vbr0", "10.88.0.200/16", "10.88.0.1")
    plug_endpoint(hyprd.netns, a2, "vbr0", "10.88.0.201/16", "10.88.0.1")
    plug_endpoint(hyprd.netns, b1, "vbr1", "10.89.0.200/24", "10.89.0.1")
    plug_endpoint(hyprd.netns, sealed, "vbr2", "10.90.0.200/24", "10.90.0.1")
    plug_endpoint(hyprd.netns, sealed2, "vbr2", "10.90.0.201/24", "10.90.0.1")

    # same network: reachable
    assert reaches(a1, "10.88.0.201")
    # different networks: isolated, both ways
    assert not reaches(a1, "10.89.0.200")
    assert not reaches(b1, "10.88.0.200")
    # normal networks reach upstream through the masquerade
    assert reaches(a1, UPSTREAM_ADDRESS)
    assert reaches(b1, UPSTREAM_ADDRESS)
    # an internal network has no path out, nor to other networks, but works inside
    assert reaches(sealed, "10.90.0.201")
    assert not reaches(sealed, UPSTREAM_ADDRESS)
    assert not reaches(sealed, "10.88.0.200")
    assert not reaches(a1, "10.90.0.200")
    # upstream cannot open connections into a network (it would need the route anyway)
    in_ns(upstream, "ip", "route", "add", "10.88.0.0/16", "via", UPLINK_ADDRESS)
    assert not reaches(upstream, "10.88.0.200")

    # removing the network removes the path: the masquerade goes with it
    hyprd.ok("network", "rm", "blue")
    assert not reaches(b1, UPSTREAM_ADDRESS)
