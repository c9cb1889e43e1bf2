"""The ptp network driver with real VMs: a /30 per NIC on its own TAP, no bridge; VMs reach
each other only through published ports, the internet through the masquerade, names
through the network's DNS server."""

from __future__ import annotations

from collections.abc import Callable

from hypr.sandbox import UPLINK_ADDRESS, UPSTREAM_ADDRESS, Hyprd, add_upstream, in_ns
from tests.conftest import links


def guest(hyprd: Hyprd, vm: str, script: str) -> str:
    return hyprd.ok("exec", vm, "sh", "-c", script)


def test_ptp_network_routes_a_30_per_vm(hyprd: Hyprd, make_netns: Callable[[], str]) -> None:
    hyprd.ok("network", "create", "--driver", "ptp", "--subnet", "172.16.0.0/16", "p2p")
    upstream = make_netns()
    add_upstream(hyprd.netns, upstream)
    hyprd.ok("run", "-d", "--name", "one", "--network", "p2p", "-p", "8080:80", "busybox",
             "httpd", "-f", "-p", "80", "-h", "/etc")  # fmt: skip
    hyprd.ok("run", "-d", "--name", "two", "--network", "p2p", "busybox", "sleep", "3600")
    one, two = hyprd.inspect("one"), hyprd.inspect("two")
    assert (one["guest_ip"], two["guest_ip"]) == ("172.16.0.2", "172.16.0.6")
    assert one["networks"][0]["gateway"] == "172.16.0.1"
    assert one["networks"][0]["prefix_len"] == 30

    # in the kernel: each TAP holds its host side, no bridge is anyone's master
    seen = links(hyprd.netns)
    tap_one, tap_two = seen[one["tap_name"]], seen[two["tap_name"]]
    assert tap_one["addresses"] == ["172.16.0.1/30"] and tap_one["master"] is None
    assert tap_two["addresses"] == ["172.16.0.5/30"] and tap_two["master"] is None
    assert not any(link["kind"] == "bridge" and "172.16" in str(link["addresses"])
                   for link in seen.values())  # fmt: skip
    assert seen["vpt0"]["addresses"] == ["172.16.255.254/32"]  # its DNS server's

    # the guest's side: its address, its gateway, its DNS server
    assert "172.16.0.6/30" in guest(hyprd, "two", "ip -4 addr show eth0")
    assert "default via 172.16.0.5" in guest(hyprd, "two", "ip route")
    assert "172.16.0.2" in guest(hyprd, "two", "nslookup one.hypr 2>&1 || true")

    # isolation by construction: no path from one VM to the other...
    reach = "ping -c 1 -W 1 172.16.0.2 >/dev/null 2>&1 && echo yes || echo no"
    assert guest(hyprd, "two", reach).strip() == "no"
    # ...but its published port, as from anywhere, and the host reaches it on loopback
    fetch = "printf 'GET /passwd HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {} 8080"
    assert "root:" in guest(hyprd, "two", fetch.format("172.16.0.5"))  # its own gateway
    assert "root:" in guest(hyprd, "two", fetch.format(UPLINK_ADDRESS))
    host = in_ns(hyprd.netns, "curl", "-sf", "--max-time", "5", "http://127.0.0.1:8080/passwd")
    assert "root:" in host.stdout
    # NAT to the outside world: upstream has no route back to 172.16/16
    assert guest(hyprd, "two", f"ping -c 1 -W 2 {UPSTREAM_ADDRESS} >/dev/null && echo ok") == "ok\n"

    hyprd.ok("rm", "-f", "one", "two")
    assert one["tap_name"] not in links(hyprd.netns)
    hyprd.ok("network", "rm", "p2p")
    assert "vpt0" not in links(hyprd.netns)


def test_ptp_refuses_what_it_cannot_be(hyprd: Hyprd) -> None:
    for args, message in [
        (["--subnet", "172.16.0.0/30"], "needs a /29 or larger"),
        (["--subnet", "172.16.0.0/16", "--gateway", "172.16.0.1"], "no gateway of its own"),
        (["--internal"], "cannot be --internal"),
    ]:
        result = hyprd.hypr("network", "create", "--driver", "ptp", *args, "bad")
        assert result.returncode != 0 and message in result.stderr
    assert "bad" not in hyprd.ok("network", "ls")


def test_ptp_refuses_dhcp_vms(hyprd: Hyprd) -> None:
    hyprd.ok("network", "create", "--driver", "ptp", "p2p")
    result = hyprd.hypr("run", "-d", "--dhcp", "--network", "p2p", "busybox", "sleep", "9")
    assert result.returncode != 0 and "no DHCP server serves ptp network p2p" in result.stderr
    assert hyprd.ok("ps", "-a", "-q") == ""
