"""What a hostile guest cannot do: take another VM's MAC or address, or reach the host from
an --internal network. Traffic stays inside namespaces the tests made."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from hypr.sandbox import UPLINK_ADDRESS, Hyprd, add_upstream, in_ns, plug_endpoint


def reaches(ns: str, address: str, source: str | None = None) -> bool:
    via = ["-I", source] if source else []
    return in_ns(ns, "ping", "-c", "1", "-W", "1", *via, address, check=False).returncode == 0


def fetches(ns: str, url: str) -> bool:
    args = ["curl", "-sf", "--max-time", "2", url]
    return in_ns(ns, *args, check=False).returncode == 0


@contextmanager
def http_server(ns: str, port: int) -> Iterator[None]:
    """A web server on every address of `ns` while the block runs."""
    code = (
        "import http.server, socketserver\n"
        f"s = socketserver.TCPServer(('0.0.0.0', {port}), http.server.SimpleHTTPRequestHandler)\n"
        "print('ready', flush=True)\n"
        "s.serve_forever()\n"
    )
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd="/",
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield
    finally:
        proc.kill()
        proc.wait()


def test_internal_network_reaches_only_its_members_and_its_dns(
    hyprd: Hyprd, make_netns: Callable[[], str]
) -> None:
    hyprd.ok("network", "create", "sealed", "--internal", "--subnet", "10.90.0.0/24")
    add_upstream(hyprd.netns, make_netns())  # gives hyprd's namespace a second address
    sealed, sealed2, normal = make_netns(), make_netns(), make_netns()
    plug_endpoint(hyprd.netns, sealed, "vbr1", "10.90.0.200/24", "10.90.0.1")
    plug_endpoint(hyprd.netns, sealed2, "vbr1", "10.90.0.201/24", "10.90.0.1")
    plug_endpoint(hyprd.netns, normal, "vbr0", "10.88.0.200/16", "10.88.0.1")

    with http_server(hyprd.netns, 8000):
        # the hostile run: another network's gateway, and a server on another host address
        assert not reaches(sealed, "10.88.0.1")
        assert not fetches(sealed, f"http://{UPLINK_ADDRESS}:8000/")
        assert not fetches(sealed, "http://10.88.0.1:8000/")
        assert not fetches(sealed, "http://10.90.0.1:8000/")  # its own gateway: DNS only
        # a normal network still reaches the host (documented, as Docker does)
        assert fetches(normal, f"http://{UPLINK_ADDRESS}:8000/")
    # its members and its DNS server still answer
    assert reaches(sealed, "10.90.0.201")
    answer = in_ns(sealed, "dig", "+tries=1", "+time=2", "@10.90.0.1", "nosuch.hypr").stdout
    assert "status: NXDOMAIN" in answer
    # a query to another gateway is answered by its own network's server all the same
    answer = in_ns(sealed, "dig", "+tries=1", "+time=2", "@10.88.0.1", "nosuch.hypr").stdout
    assert "status: NXDOMAIN" in answer
    # the host may still open connections into the internal network (replies come back)
    assert reaches(hyprd.netns, "10.90.0.200")


def documented_guard() -> list[str]:
    """The nft commands docs/networking.md gives to close the host to VMs."""
    doc = (Path(__file__).parent.parent / "docs" / "networking.md").read_text()
    section = doc.split("### What VMs reach on the host", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return block.strip().splitlines()


def test_the_documented_rule_closes_the_host_to_vms(
    hyprd: Hyprd, make_netns: Callable[[], str]
) -> None:
    add_upstream(hyprd.netns, make_netns())
    endpoint = make_netns()
    plug_endpoint(hyprd.netns, endpoint, "vbr0", "10.88.0.200/16", "10.88.0.1")
    with http_server(hyprd.netns, 8000):
        assert fetches(endpoint, f"http://{UPLINK_ADDRESS}:8000/")  # open, as documented
        for command in documented_guard():
            in_ns(hyprd.netns, "sh", "-c", command)
        assert not fetches(endpoint, f"http://{UPLINK_ADDRESS}:8000/")
        assert not fetches(endpoint, "http://10.88.0.1:8000/")
    answer = in_ns(endpoint, "dig", "+tries=1", "+time=2", "@10.88.0.1", "nosuch.hypr").stdout
    assert "status: NXDOMAIN" in answer


# --- anti-spoofing, with real guests -----------------------------------------------------


def guest(hyprd: Hyprd, vm: str, script: str) -> int:
    return hyprd.hypr("exec", vm, "--", "sh", "-c", script).returncode


def neighbour(hyprd: Hyprd, address: str) -> str | None:
    """The MAC hyprd's namespace has learnt for `address`, if any."""
    out = in_ns(hyprd.netns, "ip", "-j", "neigh", "show", address).stdout
    entries: list[dict[str, Any]] = json.loads(out or "[]")
    return next((e["lladdr"] for e in entries if "lladdr" in e), None)


def guarded(hyprd: Hyprd) -> list[Any]:
    out = in_ns(hyprd.netns, "nft", "-j", "list", "set", "bridge", "hypr", "nic_ips").stdout
    (found,) = [item["set"] for item in json.loads(out)["nftables"] if "set" in item]
    return sorted(json.dumps(elem) for elem in found.get("elem", []))


@pytest.mark.vm
def test_a_guest_cannot_take_another_vms_mac_or_address(hyprd: Hyprd) -> None:
    for name in ("v1", "v2"):
        hyprd.ok("run", "-d", "--name", name, "busybox", "sleep", "3600")
    v1, v2 = hyprd.inspect("v1"), hyprd.inspect("v2")
    gateway = "10.88.0.1"
    assert reaches(hyprd.netns, v2["guest_ip"])
    assert neighbour(hyprd, v2["guest_ip"]) == v2["guest_mac"]

    # v1 takes v2's MAC and address, and talks from them
    assert guest(hyprd, "v1", f"ip link set eth0 down; ip link set eth0 address "
                 f"{v2['guest_mac']}; ip link set eth0 up; "
                 f"ip addr add {v2['guest_ip']}/16 dev eth0") == 0  # fmt: skip
    assert guest(hyprd, "v1", f"ping -c 2 -W 1 -I {v2['guest_ip']} {gateway}") != 0
    assert reaches(hyprd.netns, v2["guest_ip"])
    assert neighbour(hyprd, v2["guest_ip"]) == v2["guest_mac"]

    # back to its own MAC: its own address works, an address it was not given does not
    assert guest(hyprd, "v1", f"ip link set eth0 down; ip link set eth0 address "
                 f"{v1['guest_mac']}; ip link set eth0 up; "
                 f"ip addr del {v2['guest_ip']}/16 dev eth0; "
                 "ip addr add 10.88.7.7/16 dev eth0; "
                 f"ip route replace default via {gateway}") == 0  # fmt: skip
    assert guest(hyprd, "v1", f"ping -c 1 -W 2 -I {v1['guest_ip']} {gateway}") == 0
    assert guest(hyprd, "v1", f"ping -c 2 -W 1 -I 10.88.7.7 {gateway}") != 0
    assert neighbour(hyprd, "10.88.7.7") is None
    assert guest(hyprd, "v1", f"ping -c 2 -W 1 -I 10.88.7.7 {v2['guest_ip']}") != 0

    # the elements follow the VMs: rebuilt for adopted VMs, gone with a stopped one
    before = guarded(hyprd)
    assert len(before) == 2
    hyprd.restart()
    assert guarded(hyprd) == before
    hyprd.ok("stop", "-t", "1", "v1")
    assert len(guarded(hyprd)) == 1 and v2["guest_ip"] in guarded(hyprd)[0]


# --- what other local users can read -------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.vm
def test_state_and_logs_are_roots_alone(hyprd: Hyprd) -> None:
    hyprd.ok("run", "-d", "--name", "secret", "-e", "TOKEN=hunter2", "busybox", "sleep", "3600")
    vm_id = hyprd.inspect("secret")["id"]
    db = hyprd.data_dir / "hypr.db"
    for path in (db, db.with_name("hypr.db-wal"), db.with_name("hypr.db-shm")):
        assert mode(path) == 0o600, path
    assert mode(hyprd.data_dir) == 0o700
    assert mode(hyprd.data_dir / "logs") == 0o700
    assert mode(hyprd.data_dir / "logs" / f"{vm_id}.log") == 0o600
    runtime = hyprd.run_dir / "vms" / vm_id[:16]
    assert mode(runtime) == 0o700
    assert all(mode(path) & 0o077 == 0 for path in runtime.iterdir()), list(runtime.iterdir())
    # dnsmasq makes its pid and log files 0644 and 0640 itself; nobody can enter its dirs
    assert all(mode(path) == 0o700 for path in (hyprd.run_dir / "dns").rglob("*") if path.is_dir())
    assert mode(hyprd.run_dir) == 0o711  # others may reach the socket by name, nothing else
    assert mode(hyprd.socket) == 0o660

    # files an older hyprd left readable are made private at the next start
    hyprd.stop()
    for path in (db, hyprd.data_dir / "logs" / f"{vm_id}.log"):
        path.chmod(0o644)
    hyprd.data_dir.chmod(0o755)
    hyprd.start()
    assert mode(db) == 0o600 and mode(hyprd.data_dir) == 0o700
    assert mode(hyprd.data_dir / "logs" / f"{vm_id}.log") == 0o600
