"""DNS and DHCP with real dnsmasq servers and real VMs, in namespaces the tests create.

A module-wide lab boots VMs on three networks (one internal) once, with an "upstream"
resolver in a namespace of its own that hyprd's resolv.conf points at; the tests that only
ask questions share it. Tests that change state (restarts, stops, removals, DHCP) get a
daemon of their own.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from hypr.network.dns_config import network_config, reverse_zones, view_config, write_record
from hypr.sandbox import (
    UPSTREAM_ADDRESS,
    Hyprd,
    add_upstream,
    create_netns,
    delete_netns,
    in_ns,
    plug_endpoint,
    sh,
    wait_for,
)
from hypr.state.networks import NetworkRecord

vm = pytest.mark.vm
UPSTREAM = UPSTREAM_ADDRESS  # the upstream resolver, in its own namespace
UPSTREAM_ANSWER = "192.0.2.99"
PROBE = "10.88.255.254"  # a namespace plugged into the default network, as a guest would be


@dataclass
class Lab:
    hyprd: Hyprd
    probe: str
    vms: dict[str, dict]  # name -> inspect view

    def ip(self, vm: str, network: str) -> str:
        return next(n["ip"] for n in self.vms[vm]["networks"] if n["network"] == network)

    def nslookup(self, vm: str, *args: str) -> tuple[int, list[str], str]:
        """Exit code, the answer's addresses and the whole output of busybox nslookup."""
        result = self.hyprd.hypr("exec", vm, "--", "nslookup", *args)
        out = result.stdout + result.stderr
        return result.returncode, re.findall(r"^Address: ([0-9.]+)$", out, re.M), out


def dig(ns: str, server: str, *query: str, port: int = 53) -> str:
    """dig's whole answer, one try with a short timeout (a dropped query shows as such)."""
    args = ["dig", "+tries=1", "+time=1", "-p", str(port), f"@{server}", *query]
    return in_ns(ns, *args, check=False).stdout


def answers(ns: str, server: str, name: str, port: int = 53) -> list[str]:
    return dig(ns, server, "+short", name, port=port).split()


def rcode(output: str) -> str | None:
    found = re.search(r"status: (\w+)", output)
    return found.group(1) if found else None


def steered(hyprd: Hyprd) -> dict[str, int]:
    """The firewall's map of VM addresses whose queries go to a view's port."""
    out = in_ns(hyprd.netns, "nft", "-j", "list", "map", "inet", "hypr", "dns_views").stdout
    (table,) = [item["map"] for item in json.loads(out)["nftables"] if "map" in item]
    return {address: port for address, port in table.get("elem", [])}


def net_id(hyprd: Hyprd, name: str) -> str:
    return str(json.loads(hyprd.ok("network", "inspect", name))[0]["Id"])


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    ns, upstream, probe = create_netns(), create_netns(), create_netns()
    # `ip netns exec` bind-mounts this over /etc/resolv.conf for hyprd and its dnsmasq.
    netns_etc = Path("/etc/netns") / ns
    root = tmp_path_factory.mktemp("dnslab")
    try:
        netns_etc.mkdir(parents=True)
        (netns_etc / "resolv.conf").write_text(f"nameserver {UPSTREAM}\n")
        add_upstream(ns, upstream)
        in_ns(upstream, "dnsmasq", "--no-resolv", "--no-hosts", "--bind-interfaces",
              f"--listen-address={UPSTREAM}", f"--address=/upstream.test/{UPSTREAM_ANSWER}",
              f"--pid-file={root / 'upstream.pid'}")  # fmt: skip
        hyprd = Hyprd(ns, root)
        hyprd.start()
        hyprd.ok("network", "create", "other", "--subnet", "10.89.0.0/24")
        hyprd.ok("network", "create", "sealed", "--internal", "--subnet", "10.90.0.0/24")
        plug_endpoint(ns, probe, "vbr0", f"{PROBE}/16", "10.88.0.1")
        plan = {
            "a1": ["--network", "bridge"],
            "b1": ["--network", "other"],
            "m1": ["--network", "bridge", "--network", "other"],
            "m2": ["--network", "bridge", "--network", "other"],
            "s1": ["--network", "sealed"],
        }

        def run(name: str) -> str:
            return hyprd.ok("run", "-d", "--name", name, "--memory", "128m", *plan[name],
                            "busybox", "sleep", "3600")  # fmt: skip

        with ThreadPoolExecutor(len(plan)) as pool:
            list(pool.map(run, plan))
        yield Lab(hyprd, probe, {name: hyprd.inspect(name) for name in plan})
    finally:
        for name in (ns, upstream, probe):
            delete_netns(name)
        shutil.rmtree(netns_etc, ignore_errors=True)


@vm
def test_names_resolve_on_a_shared_network(lab: Lab) -> None:
    for name in ("m1", "m1.hypr"):
        code, addresses, out = lab.nslookup("a1", name)
        assert (code, addresses) == (0, [lab.ip("m1", "bridge")]), out
    code, addresses, out = lab.nslookup("b1", "m1")
    assert (code, addresses) == (0, [lab.ip("m1", "other")]), out


@vm
def test_names_of_other_networks_are_not_visible(lab: Lab) -> None:
    for asker, name in [("a1", "b1"), ("a1", "b1.hypr"), ("b1", "a1"), ("s1", "a1")]:
        code, addresses, out = lab.nslookup(asker, name)
        assert code != 0 and not addresses and "NXDOMAIN" in out, (asker, name, out)


@vm
def test_vm_on_two_networks_sees_both_and_gets_its_own_networks_address(lab: Lab) -> None:
    assert lab.nslookup("m1", "a1")[1] == [lab.ip("a1", "bridge")]
    assert lab.nslookup("m1", "b1.hypr")[1] == [lab.ip("b1", "other")]
    # m2 is on both networks: the answer is its address on the network the query came in
    # on (the first nameserver is the first network's gateway), not both addresses.
    assert lab.nslookup("m1", "m2")[1] == [lab.ip("m2", "bridge")]
    assert lab.nslookup("m1", "m2", "10.89.0.1")[1] == [lab.ip("m2", "other")]
    assert lab.nslookup("m1", "s1")[0] != 0


@vm
def test_ptr_and_empty_aaaa(lab: Lab) -> None:
    code, _, out = lab.nslookup("a1", lab.ip("m1", "bridge"))
    assert code == 0 and "name = m1.hypr" in out, out
    code, addresses, out = lab.nslookup("a1", "-type=AAAA", "m1")
    assert (code, addresses) == (0, []) and "NXDOMAIN" not in out, out
    out = dig(lab.hyprd.netns, "10.88.0.1", "m1.hypr", "AAAA")
    assert rcode(out) == "NOERROR" and "ANSWER: 0," in out, out


@vm
def test_other_names_are_forwarded_upstream_except_on_internal_networks(lab: Lab) -> None:
    assert lab.nslookup("a1", "upstream.test")[1] == [UPSTREAM_ANSWER]
    assert lab.nslookup("m1", "upstream.test")[1] == [UPSTREAM_ANSWER]
    code, addresses, out = lab.nslookup("s1", "upstream.test")
    assert code != 0 and not addresses and "REFUSED" in out, out


@vm
def test_queries_stay_on_the_askers_network(lab: Lab) -> None:
    """Asking another network's gateway, or a view's port, gets nothing more."""
    probe = lab.probe
    assert answers(probe, "10.88.0.1", "a1") == [lab.ip("a1", "bridge")]
    assert answers(probe, "10.88.0.1", "a1", port=41003) == [lab.ip("a1", "bridge")]
    # the other network's server is out of reach: the query lands on the bridge's own server
    assert rcode(dig(probe, "10.89.0.1", "b1")) == "NXDOMAIN"
    assert answers(probe, "10.89.0.1", "m1") == [lab.ip("m1", "bridge")]
    (view,) = json.loads(lab.hyprd.ok("dns", "--format", "json"))["views"]
    assert "timed out" in dig(probe, "10.88.0.1", "b1", port=view["ports"][0])
    # the host itself reaches every server, on port 53 and 41003
    host = lab.hyprd.netns
    assert answers(host, "10.89.0.1", "b1.hypr", port=41003) == [lab.ip("b1", "other")]
    assert answers(host, "10.88.0.1", "b1") == []


@vm
def test_dns_command_lists_the_servers(lab: Lab) -> None:
    data = json.loads(lab.hyprd.ok("dns", "--format", "json"))
    servers = {s["networks"][0]: s for s in data["servers"]}
    assert set(servers) == {"bridge", "other", "sealed"}
    assert servers["bridge"]["addresses"] == ["10.88.0.1"]
    assert servers["bridge"]["ports"] == [53, 41003]
    assert (servers["bridge"]["forwards"], servers["sealed"]["forwards"]) == (True, False)
    assert all(s["pid"] for s in servers.values())
    assert data["systemd_resolved"] is False  # it does not run in the test's namespace
    (view,) = data["views"]
    assert (view["networks"], view["forwards"]) == (["bridge", "other"], True)
    text = lab.hyprd.ok("dns")
    assert "resolvectl dns vbr1 10.89.0.1 && resolvectl domain vbr1 '~hypr'" in text
    assert re.search(r"^bridge\s+vbr0\s+10\.88\.0\.1\s+53,41003\s+yes\s+\d+$", text, re.M)


# --- tests with a daemon of their own ---------------------------------------------------


@vm
def test_records_follow_the_vm_and_servers_outlive_hyprd(hyprd: Hyprd) -> None:
    ns = hyprd.netns
    hyprd.ok("network", "create", "net2", "--subnet", "10.89.0.0/24")
    first = hyprd.dns_servers()
    assert [d for d, _ in first] == sorted(net_id(hyprd, n)[:12] for n in ("bridge", "net2"))

    hyprd.ok("run", "-d", "--name", "web", "busybox", "sleep", "3600")
    ip = hyprd.inspect("web")["guest_ip"]
    assert answers(ns, "10.88.0.1", "web.hypr", port=41003) == [ip]  # there once run returns
    hyprd.ok("run", "-d", "--name", "multi", "--network", "bridge", "--network", "net2",
             "busybox", "sleep", "3600")  # fmt: skip
    with_view = hyprd.dns_servers()
    assert len(with_view) == 3 and set(first) < set(with_view)  # a view; no server restarted

    hyprd.stop(signal.SIGKILL)
    assert answers(ns, "10.88.0.1", "web") == [ip]  # the servers answer while hyprd is down
    hyprd.start()
    assert hyprd.dns_servers() == with_view  # adopted: exactly one each, the same processes
    assert answers(ns, "10.88.0.1", "web") == [ip]
    multi = {n["ip"] for n in hyprd.inspect("multi")["networks"]}
    assert set(steered(hyprd)) == multi and len(set(steered(hyprd).values())) == 1

    # a server that dies is started again
    bridge_dir = net_id(hyprd, "bridge")[:12]
    sh("kill", "-9", str(dict(with_view)[bridge_dir]))
    wait_for(lambda: answers(ns, "10.88.0.1", "web") == [ip])
    assert len(hyprd.dns_servers()) == 3

    hyprd.ok("stop", "-t", "1", "web")
    assert rcode(dig(ns, "10.88.0.1", "web.hypr")) == "NXDOMAIN"  # gone once stop returns
    hyprd.ok("start", "web")
    assert answers(ns, "10.88.0.1", "web.hypr") == [hyprd.inspect("web")["guest_ip"]]

    hyprd.ok("network", "rm", "--force", "net2")  # takes multi off net2, so its view goes
    assert [d for d, _ in hyprd.dns_servers()] == [bridge_dir]
    assert [p.name for p in (hyprd.run_dir / "dns").iterdir()] == [bridge_dir]
    assert steered(hyprd) == {}


@vm
def test_dhcp_guest_gets_its_ipam_address_and_loses_its_lease_with_the_vm(hyprd: Hyprd) -> None:
    hyprd.ok("run", "-d", "--name", "dh", "--dhcp", "busybox", "sleep", "3600")
    view = hyprd.inspect("dh")
    assert view["dhcp"] is True
    cmdline = hyprd.ok("exec", "dh", "--", "cat", "/proc/cmdline")
    assert "hypr.net=eth0,dhcp," in cmdline, cmdline  # no static address
    addr = hyprd.ok("exec", "dh", "--", "ip", "-4", "addr", "show", "eth0")
    assert f"inet {view['guest_ip']}/16" in addr, addr
    leases = hyprd.run_dir / "dns" / net_id(hyprd, "bridge")[:12] / "leases"
    assert f" {view['guest_mac']} {view['guest_ip']} " in leases.read_text()

    hyprd.ok("rm", "-f", "dh")
    wait_for(lambda: view["guest_mac"] not in leases.read_text())
    reservations = leases.parent / "dhcp"
    assert list(reservations.iterdir()) == []


def test_names_differing_only_in_case_are_refused(hyprd: Hyprd) -> None:
    with hyprd.api() as api:
        body = {"image": "busybox", "command": ["true"], "start": False}
        assert api.post("/vms", json={**body, "name": "web"}).status_code == 201
        refused = api.post("/vms", json={**body, "name": "Web"})
    assert refused.status_code == 409 and "DNS names ignore case" in refused.json()["message"]
    assert hyprd.db_rows("SELECT name FROM vms") == [("web",)]


# --- configuration, without servers ----------------------------------------------------


def _net(subnet: str, internal: bool = False, name: str = "n") -> NetworkRecord:
    net = IPv4Network(subnet)
    return NetworkRecord(
        name * 64, name, "bridge", net, net.network_address + 1, "vbr9", internal, "now"
    )


def test_reverse_zones_cover_the_subnet_in_whole_octets() -> None:
    assert reverse_zones(IPv4Network("10.88.0.0/16")) == ["88.10.in-addr.arpa"]
    assert reverse_zones(IPv4Network("10.90.0.0/24")) == ["0.90.10.in-addr.arpa"]
    assert len(reverse_zones(IPv4Network("10.89.16.0/20"))) == 16
    assert reverse_zones(IPv4Network("10.0.0.0/8")) == ["10.in-addr.arpa"]
    assert reverse_zones(IPv4Network("10.9.9.4/30"))[0] == "4.9.9.10.in-addr.arpa"


def test_configs_forward_only_where_some_network_is_not_internal(tmp_path: Path) -> None:
    normal, sealed = _net("10.89.0.0/24", name="a"), _net("10.90.0.0/24", True, name="b")
    assert "no-resolv" in network_config(sealed, tmp_path).splitlines()
    assert "resolv-file=/etc/resolv.conf" in network_config(normal, tmp_path).splitlines()
    view = view_config([normal, sealed], 41004, tmp_path / "dns" / "view-x", tmp_path)
    lines = view.splitlines()
    assert "resolv-file=/etc/resolv.conf" in lines and "localise-queries" in lines
    assert {"listen-address=10.89.0.1", "listen-address=10.90.0.1", "port=41004"} <= set(lines)
    assert f"hostsdir={tmp_path / 'dns' / 'aaaaaaaaaaaa' / 'hosts'}" in lines


def test_record_file_holds_every_name_bare_and_in_the_domain(tmp_path: Path) -> None:
    write_record(tmp_path, "vm", ["web", "api"], IPv4Address("10.88.0.5"))
    assert (tmp_path / "vm").read_text() == "10.88.0.5 web.hypr web api.hypr api\n"
    assert [p.name for p in tmp_path.iterdir()] == ["vm"]  # no temporary file left
