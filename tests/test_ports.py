"""Published ports (`-p`) and the SSH pool (`--ssh`), for real.

The `-p` parser is tested alone. Then a module-wide lab: a hyprd in a namespace of its own
with a small SSH pool (2200-2201) open only to 192.0.2.0/24, two client namespaces routed to
it (`inside` at 192.0.2.2, `outside` at 198.51.100.2), and two VMs: `web` publishes HTTP
(busybox httpd), UDP (a tiny echo server copied in) and SSH (httpd on port 22 stands in for
sshd); `peer` only has an SSH port and is the client for hairpin traffic. Traffic goes only
between namespaces the lab made, or to loopback inside them. The tests that change the lab
(stop/start, daemon restart, removals) come last.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hypr.cli.vms import ports_text
from hypr.errors import InvalidArgument
from hypr.network.ports import FREE_PORT, parse_publish
from hypr.sandbox import BIN, Hyprd, connect, create_netns, delete_netns, in_ns, sh
from hypr.state.ports import ANY_ADDRESS, PortForward

HOST = "192.0.2.1"  # hyprd's namespace, as the inside client reaches it
HOST_OUTSIDE = "198.51.100.1"  # the same namespace, as the outside client reaches it

# --- the -p parser ----------------------------------------------------------------------


def test_parse_forms() -> None:
    assert parse_publish("8080:80") == [PortForward("tcp", ANY_ADDRESS, 8080, 80)]
    assert parse_publish(" 127.0.0.1:53:5353/UDP ") == [
        PortForward("udp", IPv4Address("127.0.0.1"), 53, 5353)
    ]
    assert parse_publish("8000-8002:9000-9002/tcp") == [
        PortForward("tcp", ANY_ADDRESS, 8000 + i, 9000 + i) for i in range(3)
    ]
    assert parse_publish("0.0.0.0:1-1:65535") == [PortForward("tcp", ANY_ADDRESS, 1, 65535)]
    # No host port (Docker's `-p 80`, `-p 127.0.0.1::80`): the forwarder picks a free one.
    assert parse_publish("80-81/udp") == [
        PortForward("udp", ANY_ADDRESS, FREE_PORT, 80),
        PortForward("udp", ANY_ADDRESS, FREE_PORT, 81),
    ]
    assert parse_publish("127.0.0.1::80") == [
        PortForward("tcp", IPv4Address("127.0.0.1"), FREE_PORT, 80)
    ]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("http", "expected [[HOST_IP:]HOST_PORT:]GUEST_PORT"),
        ("", "expected"),
        ("1.2.3.4:8080:80:1", "expected"),
        ("1:2:3:80", "expected"),
        ("8080:", "expected"),
        ("http:80", "expected"),
        ("8080:80/", "protocol must be tcp or udp"),
        ("8080:80/sctp", "protocol must be tcp or udp"),
        ("0:80", "port 0 is not in 1-65535"),
        ("8080:65536", "port 65536 is not in 1-65535"),
        ("123456:80", "expected"),
        ("8010-8000:80-90", "runs backwards"),
        ("8000-8010:80", "the host range has 11 ports and the guest range 1"),
        ("8000-8001:80-82", "they must match"),
        ("localhost:8080:80", "is not an IP address"),
        ("[::1]:8080:80", "expected"),
        ("::1:8080:80", "expected"),
        ("8080:٨٠", "expected"),
    ],
)
def test_parse_refuses(spec: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        parse_publish(spec)
    assert message in refused.value.message
    assert "\n" not in refused.value.message


ports = st.integers(1, 65535)


@given(
    ip=st.none() | st.ip_addresses(v=4),
    host=ports,
    guest=ports,
    length=st.integers(1, 50),
    protocol=st.sampled_from([None, "tcp", "udp"]),
)
def test_parse_round_trip(
    ip: IPv4Address | None, host: int, guest: int, length: int, protocol: str | None
) -> None:
    length = min(length, 65536 - host, 65536 - guest)

    def side(first: int) -> str:
        return str(first) if length == 1 else f"{first}-{first + length - 1}"

    spec = f"{ip}:" if ip else ""
    spec += f"{side(host)}:{side(guest)}" + (f"/{protocol}" if protocol else "")
    forwards = parse_publish(spec)
    assert [(f.host_port, f.guest_port) for f in forwards] == [
        (host + i, guest + i) for i in range(length)
    ]
    assert {(f.protocol, f.host_ip, f.ssh) for f in forwards} == {
        (protocol or "tcp", ip or ANY_ADDRESS, False)
    }


@given(st.text(max_size=30))
def test_parse_fails_only_with_one_clear_line(spec: str) -> None:
    try:
        forwards = parse_publish(spec)
    except InvalidArgument as exc:
        assert exc.message.startswith("invalid port spec") and "\n" not in exc.message
    else:
        assert forwards and all(0 <= f.host_port <= 65535 for f in forwards)


def test_ps_shows_consecutive_ports_as_one_range() -> None:
    def view(ip: str, host: int, guest: int, protocol: str = "tcp") -> dict[str, Any]:
        return {"host_ip": ip, "host_port": host, "guest_port": guest, "protocol": protocol}

    ports = [view("0.0.0.0", 8000 + i, 9000 + i) for i in range(3)]
    ports += [view("0.0.0.0", 8003, 22), view("127.0.0.1", 53, 53, "udp")]
    assert ports_text(ports) == (
        "0.0.0.0:8000-8002->9000-9002/tcp, 0.0.0.0:8003->22/tcp, 127.0.0.1:53->53/udp"
    )
    assert ports_text([]) == ""


# --- the lab ----------------------------------------------------------------------------

UDP_ECHO_C = r"""
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>

int main(int argc, char **argv) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    if (argc < 2 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0)
        return 1;
    for (;;) {
        char buf[512];
        struct sockaddr_in peer;
        socklen_t len = sizeof peer;
        ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&peer, &len);
        if (n >= 0)
            sendto(fd, buf, n, 0, (struct sockaddr *)&peer, len);
    }
}
"""

# httpd on 80, 81 and 22 (the stand-in sshd), then a UDP echo on 5300 once the test has
# copied it in.
WEB_SCRIPT = (
    "mkdir -p /www && echo hi > /www/index.html && "
    "httpd -p 80 -h /www && httpd -p 81 -h /www && httpd -p 22 -h /www && "
    "while [ ! -x /tmp/udpecho ]; do sleep 0.2; done; exec /tmp/udpecho 5300"
)
WEB_PORTS = ["8080:80", "127.0.0.1:8081:80", "9000-9001:80-81", "5300:5300/udp"]

# UDP may lose a datagram (or the echo server may still be starting): ask up to 5 times.
UDP_CLIENT = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.settimeout(1)\n"
    "for _ in range(5):\n"
    "    s.sendto(b'ping', (sys.argv[1], int(sys.argv[2])))\n"
    "    try:\n"
    "        print(s.recv(100).decode())\n"
    "        break\n"
    "    except TimeoutError:\n"
    "        pass\n"
    "else:\n"
    "    sys.exit(1)\n"
)


@dataclass
class Lab:
    hyprd: Hyprd
    inside: str
    outside: str

    def view(self, name: str) -> dict[str, Any]:
        return dict(json.loads(self.hyprd.ok("inspect", name))[0])


def http(ns: str, host: str, port: int) -> str | None:
    """The body curl gets from a namespace, or None if it got no answer."""
    result = in_ns(ns, "curl", "-s", "-m", "3", f"http://{host}:{port}/", check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def udp(ns: str, host: str, port: int) -> str | None:
    result = in_ns(ns, sys.executable, "-c", UDP_CLIENT, host, str(port), check=False)
    return result.stdout.strip() if result.returncode == 0 else None


PUBLISH_OBJECTS = ("forwards", "host_forwards", "ssh_ports")


def map_elements(hyprd: Hyprd) -> dict[str, list[Any]]:
    """The elements of hypr's forwarding maps and SSH set, as `nft -j` shows them."""
    result = {}
    for item in hyprd.nft():
        obj = item.get("map") or item.get("set")
        if obj and obj["table"] == "hypr" and obj["name"] in PUBLISH_OBJECTS:
            result[obj["name"]] = obj.get("elem", [])
    return result


def forward_keys(hyprd: Hyprd) -> set[tuple[Any, ...]]:
    """Map keys such as ('tcp', 8080) or ('127.0.0.1', 'tcp', 8081)."""
    elements = map_elements(hyprd)
    return {
        tuple(key["concat"]) for name in ("forwards", "host_forwards") for key, _ in elements[name]
    }


@pytest.fixture(scope="module")
def udp_echo(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A static UDP echo server for the guest (busybox's nc has no UDP), base64-encoded."""
    out = tmp_path_factory.mktemp("udpecho")
    (out / "udpecho.c").write_text(UDP_ECHO_C)
    sh("musl-gcc", "-static", "-Os", "-o", str(out / "udpecho"), str(out / "udpecho.c"))
    return base64.b64encode((out / "udpecho").read_bytes()).decode()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, udp_echo: str) -> Iterator[Lab]:
    ns, inside, outside = create_netns(), create_netns(), create_netns()
    try:
        hyprd = Hyprd(
            ns,
            tmp_path_factory.mktemp("ports"),
            env={
                "HYPR_SSH_PORT_MIN": "2200",
                "HYPR_SSH_PORT_MAX": "2201",
                "HYPR_SSH_ALLOWED_CIDR": "192.0.2.0/24",
            },
        )
        hyprd.start()
        connect(hyprd.netns, inside, "up-in", f"{HOST}/24", "192.0.2.2/24")
        connect(hyprd.netns, outside, "up-out", f"{HOST_OUTSIDE}/24", "198.51.100.2/24")
        publish = [arg for spec in WEB_PORTS for arg in ("-p", spec)]
        runs = [
            subprocess.Popen(
                [str(BIN / "hypr"), "run", "-d", *args],
                env=hyprd.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for args in (
                ["--name", "web", *publish, "--ssh", "busybox", "sh", "-c", WEB_SCRIPT],
                ["--name", "peer", "--ssh", "busybox", "sleep", "3600"],
            )
        ]
        for run in runs:
            _, err = run.communicate(timeout=300)
            assert run.returncode == 0, err
        lab = Lab(hyprd, inside, outside)
        copy_udp_echo(lab, udp_echo)
        yield lab
    finally:
        for name in (ns, inside, outside):
            delete_netns(name)


def copy_udp_echo(lab: Lab, udp_echo: str) -> None:
    """Copy the echo server into `web`, whose workload waits for it and then runs it."""
    lab.hyprd.ok(
        "exec", "-i", "web", "--", "sh", "-c",
        "base64 -d > /tmp/u.part && chmod +x /tmp/u.part && mv /tmp/u.part /tmp/udpecho",
        input=udp_echo,
    )  # fmt: skip


@pytest.mark.vm
def test_views_show_the_forwards(lab: Lab) -> None:
    web, peer = lab.view("web"), lab.view("peer")
    ssh = {web["ssh_port"], peer["ssh_port"]}
    assert ssh == {2200, 2201}  # distinct ports from the pool
    assert {
        (p["host_ip"], p["host_port"], p["guest_port"], p["protocol"]) for p in web["ports"]
    } == {
        ("0.0.0.0", 8080, 80, "tcp"),
        ("127.0.0.1", 8081, 80, "tcp"),
        ("0.0.0.0", 9000, 80, "tcp"),
        ("0.0.0.0", 9001, 81, "tcp"),
        ("0.0.0.0", 5300, 5300, "udp"),
        ("0.0.0.0", web["ssh_port"], 22, "tcp"),
    }
    row = next(line for line in lab.hyprd.ok("ps").splitlines() if " web " in line)
    assert "0.0.0.0:8080->80/tcp" in row and "127.0.0.1:8081->80/tcp" in row
    assert "0.0.0.0:9000-9001->80-81/tcp" in row and "0.0.0.0:5300->5300/udp" in row
    assert f"0.0.0.0:{web['ssh_port']}->22/tcp" in row
    listing = lab.hyprd.ok("port", "web").splitlines()
    assert "80/tcp -> 0.0.0.0:8080" in listing and "5300/udp -> 0.0.0.0:5300" in listing
    assert lab.hyprd.ok("port", "web", "81").split() == ["0.0.0.0:9001"]
    result = lab.hyprd.hypr("port", "web", "82")
    assert result.returncode != 0 and "no public port 82/tcp" in result.stderr
    assert {("tcp", 8080), ("127.0.0.1", "tcp", 8081), ("udp", 5300)} <= forward_keys(lab.hyprd)
    assert set(map_elements(lab.hyprd)["ssh_ports"]) == {2200, 2201}


@pytest.mark.vm
def test_tcp_from_outside_the_host(lab: Lab) -> None:
    assert http(lab.inside, HOST, 8080) == "hi"
    assert http(lab.outside, HOST_OUTSIDE, 8080) == "hi"
    assert http(lab.inside, HOST, 9001) == "hi"  # a range: 9001 -> 81
    assert http(lab.inside, HOST, 8081) is None  # bound to 127.0.0.1 only


@pytest.mark.vm
def test_tcp_from_the_host_itself(lab: Lab) -> None:
    for address, port in (("127.0.0.1", 8080), ("127.0.0.1", 8081), (HOST, 8080)):
        assert http(lab.hyprd.netns, address, port) == "hi", (address, port)


@pytest.mark.vm
def test_hairpin_from_another_vm(lab: Lab) -> None:
    for address in (HOST, "10.88.0.1"):
        result = lab.hyprd.hypr(
            "exec", "peer", "--", "timeout", "10", "wget", "-qO-", f"http://{address}:8080/"
        )
        assert (result.returncode, result.stdout.strip()) == (0, "hi"), result.stderr


@pytest.mark.vm
def test_udp(lab: Lab) -> None:
    assert udp(lab.inside, HOST, 5300) == "ping"
    assert udp(lab.hyprd.netns, "127.0.0.1", 5300) == "ping"


@pytest.mark.vm
def test_ssh_port_only_from_the_allowed_cidr(lab: Lab) -> None:
    port = lab.view("web")["ssh_port"]
    assert http(lab.inside, HOST, port) == "hi"
    assert http(lab.outside, HOST_OUTSIDE, port) is None
    assert http(lab.outside, HOST_OUTSIDE, 8080) == "hi"  # only the SSH pool is restricted


def state(lab: Lab) -> tuple[Any, ...]:
    """What a refused request must leave as it was: rows, map elements."""
    return (
        lab.hyprd.db_rows("SELECT id, name, state FROM vms ORDER BY id"),
        lab.hyprd.db_rows("SELECT * FROM port_forwards ORDER BY vm_id, protocol, host_port"),
        map_elements(lab.hyprd),
    )


def bindable(ns: str, port: int) -> bool:
    """Whether nothing (hyprd's held sockets included) holds TCP `port` in a namespace."""
    code = f"import socket; socket.socket().bind(('0.0.0.0', {port}))"
    return in_ns(ns, sys.executable, "-c", code, check=False).returncode == 0


@pytest.mark.vm
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-p", "7000:"], "invalid port spec '7000:'"),
        (["-p", "7000:0"], "port 0 is not in 1-65535"),
        (["-p", "70000:80"], "not in 1-65535"),
        (["-p", "7000-7010:80-81"], "they must match"),
        (["-p", "7000:80/sctp"], "tcp or udp"),
        (["-p", "7000:80", "-p", "8080:80"], "0.0.0.0:8080/tcp is already published by VM web"),
        (["-p", "127.0.0.1:8080:80"], "127.0.0.1:8080/tcp is already published by VM web"),
        (["-p", "7000:80", "-p", "7000:81"], "0.0.0.0:7000/tcp is published twice"),
        (["-p", "203.0.113.7:7000:80"], "host IP 203.0.113.7 is not an address of this host"),
        (["--network", "none", "-p", "7000:80"], "cannot publish ports"),
        (["-p", "7000:80", "--ssh"], "the SSH port pool 2200-2201 is exhausted"),
    ],
)
def test_bad_input_changes_nothing(lab: Lab, args: list[str], message: str) -> None:
    before = state(lab)
    result = lab.hyprd.hypr("run", "-d", *args, "busybox", "true")
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert state(lab) == before
    assert bindable(lab.hyprd.netns, 7000)


@pytest.mark.vm
def test_api_answers_4xx_with_a_message(lab: Lab) -> None:
    with lab.hyprd.api() as api:
        bad = api.post("/vms", json={"image": "busybox", "ports": ["7000:80:1"]})
        taken = api.post("/vms", json={"image": "busybox", "ports": ["8080:80"]})
        empty = api.post("/vms", json={"image": "busybox", "ssh": True})
    assert bad.status_code == 400 and "invalid port spec" in bad.json()["message"]
    assert taken.status_code == 409 and "already published" in taken.json()["message"]
    assert empty.status_code == 409 and "exhausted" in empty.json()["message"]


@contextmanager
def host_sockets(ns: str, binds: str) -> Iterator[None]:
    """While the block runs, a process in `ns` holds the sockets that `binds` makes."""
    code = f"import socket, time\n{binds}\nprint('ready', flush=True)\ntime.sleep(120)\n"
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield
    finally:
        proc.kill()
        proc.wait()


LISTEN_TCP = "t = socket.socket(); t.bind(('0.0.0.0', {})); t.listen()"


@pytest.mark.vm
def test_port_held_by_a_host_socket_is_refused(lab: Lab) -> None:
    udp_bound = "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('127.0.0.1', 7301))"
    with host_sockets(lab.hyprd.netns, LISTEN_TCP.format(7300) + "\n" + udp_bound):
        before = state(lab)
        for spec, shown in (("7300:80", "0.0.0.0:7300/tcp"), ("7301:53/udp", "0.0.0.0:7301/udp")):
            result = lab.hyprd.hypr("run", "-d", "-p", spec, "busybox", "true")
            assert result.returncode != 0
            assert f"host port {shown} is already in use on the host" in result.stderr
        assert state(lab) == before


# --- tests that change the lab, in this order ------------------------------------------


@pytest.mark.vm
def test_forwards_go_at_stop_and_come_back_at_start(lab: Lab, udp_echo: str) -> None:
    ssh_port = lab.view("web")["ssh_port"]
    lab.hyprd.ok("stop", "-t", "1", "web")
    assert http(lab.inside, HOST, 8080) is None
    assert http(lab.hyprd.netns, "127.0.0.1", 8081) is None
    keys = forward_keys(lab.hyprd)
    assert not {("tcp", 8080), ("127.0.0.1", "tcp", 8081), ("udp", 5300)} & keys
    assert ssh_port not in map_elements(lab.hyprd)["ssh_ports"]
    assert lab.hyprd.ok("port", "web") == ""
    assert bindable(lab.hyprd.netns, 8080)  # the held socket went too
    view = lab.view("web")
    assert view["ssh_port"] == ssh_port and len(view["ports"]) == 6  # still claimed
    with host_sockets(lab.hyprd.netns, LISTEN_TCP.format(8080)):  # taken while stopped
        result = lab.hyprd.hypr("start", "web")
        assert result.returncode != 0
        assert "host port 0.0.0.0:8080/tcp is already in use on the host" in result.stderr
        assert lab.view("web")["state"] == "exited"

    lab.hyprd.ok("start", "web")
    copy_udp_echo(lab, udp_echo)
    assert http(lab.inside, HOST, 8080) == "hi"
    assert http(lab.hyprd.netns, "127.0.0.1", 8081) == "hi"
    assert udp(lab.inside, HOST, 5300) == "ping"
    assert {("tcp", 8080), ("127.0.0.1", "tcp", 8081), ("udp", 5300)} <= forward_keys(lab.hyprd)
    assert lab.view("web")["ssh_port"] == ssh_port
    assert not bindable(lab.hyprd.netns, 8080)


@pytest.mark.vm
def test_daemon_restart_publishes_the_adopted_vms_again(lab: Lab) -> None:
    before = map_elements(lab.hyprd)
    lab.hyprd.restart()
    assert map_elements(lab.hyprd) == before
    assert http(lab.inside, HOST, 8080) == "hi"
    assert http(lab.hyprd.netns, "127.0.0.1", 8081) == "hi"
    assert http(lab.outside, HOST_OUTSIDE, lab.view("web")["ssh_port"]) is None
    assert not bindable(lab.hyprd.netns, 8080)


@pytest.mark.vm
def test_removal_releases_the_ssh_port(lab: Lab) -> None:
    freed = lab.view("peer")["ssh_port"]
    lab.hyprd.ok("rm", "-f", "peer")
    assert freed not in map_elements(lab.hyprd)["ssh_ports"]
    assert lab.hyprd.db_rows("SELECT vm_id FROM port_forwards WHERE host_port = ?", (freed,)) == []
    with lab.hyprd.api() as api:
        created = api.post("/vms", json={"image": "busybox", "ssh": True, "start": False})
    assert created.status_code == 201, created.text
    assert created.json()["ssh_port"] == freed


@pytest.mark.vm
def test_forced_network_removal_closes_its_ports(lab: Lab) -> None:
    lab.hyprd.ok("network", "create", "doomed", "--subnet", "10.89.0.0/24")
    lab.hyprd.ok("run", "-d", "--name", "adrift", "--network", "doomed", "-p", "7500:80",
                 "busybox", "sleep", "3600")  # fmt: skip
    assert ("tcp", 7500) in forward_keys(lab.hyprd)
    lab.hyprd.ok("network", "rm", "--force", "doomed")
    assert ("tcp", 7500) not in forward_keys(lab.hyprd)
    assert bindable(lab.hyprd.netns, 7500)
    assert lab.view("adrift")["ports"][0]["host_port"] == 7500  # still the VM's claim


# --- bounds and daemon-side failures (own daemons, no VM boots) --------------------------


def test_parse_refuses_a_range_longer_than_the_bound() -> None:
    assert len(parse_publish("20000-20009:20000-20009", max_range=10)) == 10
    with pytest.raises(InvalidArgument) as refused:
        parse_publish("20000-20010:20000-20010", max_range=10)
    assert "the range has 11 ports, more than the 10 one range may publish" in (
        refused.value.message
    )


def test_huge_range_is_refused_before_any_claim(hyprd_factory: Any) -> None:
    hyprd = hyprd_factory(env={"HYPR_MAX_PORT_RANGE": "100"})
    with hyprd.api() as api:
        huge = api.post("/vms", json={"image": "busybox", "ports": ["20000-40000:20000-40000"]})
        fits = api.post(
            "/vms", json={"image": "busybox", "ports": ["20000-20099:80-179"], "start": False}
        )
    assert huge.status_code == 400
    assert "20001 ports, more than the 100" in huge.json()["message"]
    assert fits.status_code == 201, fits.text
    assert hyprd.db_rows("SELECT COUNT(*) FROM port_forwards") == [(100,)]
    assert hyprd.db_rows("SELECT COUNT(*) FROM vms") == [(1,)]


def test_running_out_of_descriptors_is_a_5xx_and_holds_nothing(hyprd: Hyprd) -> None:
    assert hyprd.proc is not None
    pid = hyprd.proc.pid
    with hyprd.api() as api:
        created = api.post(
            "/vms", json={"name": "many", "image": "busybox", "ports": ["21000-21099:80-179"],
                          "start": False},
        )  # fmt: skip
        assert created.status_code == 201, created.text
        in_use = len(list(Path(f"/proc/{pid}/fd").iterdir()))
        sh("prlimit", f"--pid={pid}", f"--nofile={in_use + 40}")
        started = api.post("/vms/many/start")
    assert started.status_code == 503, started.text
    message = started.json()["message"]
    assert "cannot reserve host port" in message and "Too many open files" in message
    assert "\n" not in message
    assert hyprd.inspect("many")["state"] in ("created", "exited")
    assert map_elements(hyprd)["forwards"] == []
    assert bindable(hyprd.netns, 21000)
