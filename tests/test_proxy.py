"""The reverse proxy by subdomain, for real: a hyprd in a namespace of its own, its
HAProxy on 127.0.0.1:41005 there, and busybox VMs that run a tiny static server copied in
(it answers "NAME PORT" and the request head it got, or 101 and an echo of the bytes after
an Upgrade). Clients run in hyprd's namespace: curl (which resolves *.localhost to
loopback itself, as browsers do) and Python sockets for keep-alive and the WebSocket.
The map is checked alone first; the lab's tests that change it (restarts) come last.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from ipaddress import IPv4Address

import pytest

from hypr.network.proxy_config import Route, map_entries
from hypr.sandbox import Hyprd, create_netns, delete_netns, in_ns, sh, wait_for

PROXY = "127.0.0.1:41005"
DOMAIN = "hypr.localhost"

SERVER_C = r"""
#define _GNU_SOURCE
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void serve(int fd, const char *name, int port) {
    char head[8192];
    size_t len = 0;
    while (len < sizeof head - 1) {
        ssize_t n = read(fd, head + len, sizeof head - 1 - len);
        if (n <= 0) return;
        len += n;
        head[len] = 0;
        if (strstr(head, "\r\n\r\n")) break;
    }
    char *end = strstr(head, "\r\n\r\n");
    if (!end) return;
    *end = 0;
    if (strcasestr(head, "\nupgrade: websocket")) {
        /* The client computed Sec-WebSocket-Accept (SHA-1 is not worth C here) and sent it
         * in X-Accept: the proxy checks what the server answers. */
        char *accept = strcasestr(head, "\nx-accept: ");
        char ok[512];
        snprintf(ok, sizeof ok, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Accept: %.28s\r\n\r\n",
                 accept ? accept + 11 : "");
        write(fd, ok, strlen(ok));
        char *rest = end + 4;
        if (head + len > rest) write(fd, rest, head + len - rest);
        char buf[4096];
        ssize_t n;
        while ((n = read(fd, buf, sizeof buf)) > 0) write(fd, buf, n);
        return;
    }
    char body[9000], out[9200];
    int blen = snprintf(body, sizeof body, "%s %d\n%s\n", name, port, head);
    int olen = snprintf(out, sizeof out, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                        "Content-Length: %d\r\nConnection: close\r\n\r\n%s", blen, body);
    write(fd, out, olen);
}

int main(int argc, char **argv) {
    signal(SIGCHLD, SIG_IGN);
    for (int i = 2; i < argc; i++) {
        if (i < argc - 1 && fork() != 0) continue;
        int port = atoi(argv[i]), one = 1;
        int s = socket(AF_INET, SOCK_STREAM, 0);
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
        if (bind(s, (struct sockaddr *)&addr, sizeof addr) || listen(s, 128)) return 1;
        for (;;) {
            int c = accept(s, NULL, NULL);
            if (c < 0) continue;
            if (fork() == 0) { serve(c, argv[1], port); shutdown(c, SHUT_WR); _exit(0); }
            close(c);
        }
    }
    return 0;
}
"""

# The workload waits for the server the test copies in, then runs it on the given ports.
WAIT_AND_SERVE = "while [ ! -x /tmp/srv ]; do sleep 0.1; done; exec /tmp/srv {name} {ports}"

# Two requests with different hosts on one kept-alive connection to the proxy.
KEEP_ALIVE = """
import http.client, sys
conn = http.client.HTTPConnection(*sys.argv[1].split(":"))
for host in sys.argv[2:]:
    conn.request("GET", "/", headers={"Host": host})
    print(conn.getresponse().read().decode().splitlines()[0])
"""

# A WebSocket handshake through the proxy, an echo, then (once the test says so on stdin,
# after it has changed the routes) another echo on the same connection.
WEBSOCKET = """
import base64, hashlib, socket, sys
key = b"dGhlIHNhbXBsZSBub25jZQ=="
accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
s = socket.create_connection(tuple(sys.argv[1].split(":")), timeout=30)
s.sendall(b"GET /ws HTTP/1.1\\r\\nHost: " + sys.argv[2].encode() + b"\\r\\n"
          b"Upgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Version: 13\\r\\n"
          b"Sec-WebSocket-Key: " + key + b"\\r\\nX-Accept: " + accept + b"\\r\\n\\r\\n")
head = b""
while b"\\r\\n\\r\\n" not in head:
    head += s.recv(1024)
print(head.split(b"\\r\\n")[0].decode(), flush=True)
for word in (b"first", b"second"):
    if word == b"second":
        sys.stdin.readline()
    s.sendall(word)
    got = b""
    while len(got) < len(word):
        got += s.recv(1024)
    print(got.decode(), flush=True)
"""


# --- the map, alone -----------------------------------------------------------------------


def test_map_entries_name_wins_over_port_prefix() -> None:
    web = Route(("web", "0123456789ab"), "web", IPv4Address("10.88.0.2"), (80, 8080))
    other = Route(("80-web",), "80-web", IPv4Address("10.88.0.3"), (3000,))
    idle = Route(("idle",), "idle", IPv4Address("10.88.0.4"), ())
    entries = map_entries([web, other, idle], "hypr.localhost")
    assert entries["web.hypr.localhost"] == "10.88.0.2/80/web"
    assert entries["0123456789ab.hypr.localhost"] == "10.88.0.2/80/web"
    assert entries["8080-web.hypr.localhost"] == "10.88.0.2/8080/web"
    assert entries["80-web.hypr.localhost"] == "10.88.0.3/3000/80-web"  # the VM's own name
    assert not any("idle" in host for host in entries)  # no exposed port: the gate's 404


# --- the lab ------------------------------------------------------------------------------


def get(hyprd: Hyprd, host: str, via: str = PROXY) -> tuple[int, str]:
    """(status, body) of GET / for `host`, from hyprd's namespace."""
    result = in_ns(
        hyprd.netns, "curl", "-s", "-m", "30", "-H", f"Host: {host}",
        "-H", "X-Forwarded-For: 203.0.113.9", "-w", "\n%{http_code}", f"http://{via}/",
    )  # fmt: skip
    body, _, status = result.stdout.rpartition("\n")
    return int(status), body.removesuffix("\n")


def serving(hyprd: Hyprd, host: str, first_line: str) -> bool:
    status, body = get(hyprd, host)
    return status == 200 and body.startswith(first_line)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The static test server, base64-encoded for `hypr exec -i`."""
    out = tmp_path_factory.mktemp("server")
    (out / "srv.c").write_text(SERVER_C)
    sh("musl-gcc", "-static", "-Os", "-o", str(out / "srv"), str(out / "srv.c"))
    return base64.b64encode((out / "srv").read_bytes()).decode()


def run_server_vm(
    hyprd: Hyprd, server: str, name: str, ports: list[int], expose: list[int]
) -> None:
    script = WAIT_AND_SERVE.format(name=name, ports=" ".join(map(str, ports)))
    flags = [arg for port in expose for arg in ("--expose", str(port))]
    hyprd.ok("run", "-d", "--name", name, *flags, "busybox", "sh", "-c", script)
    hyprd.ok(
        "exec", "-i", name, "--", "sh", "-c",
        "base64 -d > /tmp/s.part && chmod +x /tmp/s.part && mv /tmp/s.part /tmp/srv",
        input=server,
    )  # fmt: skip


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, server: str) -> Iterator[Hyprd]:
    """`alpha` serves 80 and 8080 and exposes 9090 where nothing listens; `beta` serves
    80; `gamma` exposes 80 and has exited."""
    ns = create_netns()
    try:
        hyprd = Hyprd(ns, tmp_path_factory.mktemp("proxy"), env={"HYPR_PROXY_ADDR": PROXY})
        hyprd.start()
        run_server_vm(hyprd, server, "alpha", [80, 8080], [80, 8080, 9090])
        run_server_vm(hyprd, server, "beta", [80], [80])
        hyprd.ok("run", "-d", "--name", "gamma", "--expose", "80", "busybox", "true")
        wait_for(lambda: hyprd.inspect("gamma")["state"] == "exited")
        wait_for(lambda: serving(hyprd, f"alpha.{DOMAIN}", "alpha 80"))
        wait_for(lambda: serving(hyprd, f"beta.{DOMAIN}", "beta 80"))
        yield hyprd
    finally:
        delete_netns(ns)


def haproxy_pid(hyprd: Hyprd) -> int:
    """The pid in HAProxy's pid file (0 while a new one is being written)."""
    text = (hyprd.run_dir / "proxy" / "haproxy.pid").read_text().strip()
    return int(text) if text.isdigit() else 0


@pytest.mark.vm
def test_hosts_and_port_prefixes_reach_their_vm(lab: Hyprd) -> None:
    assert get(lab, f"alpha.{DOMAIN}")[1].startswith("alpha 80\n")
    assert get(lab, f"beta.{DOMAIN}")[1].startswith("beta 80\n")
    assert get(lab, f"8080-alpha.{DOMAIN}")[1].startswith("alpha 8080\n")
    assert get(lab, f"80-alpha.{DOMAIN}:41005")[1].startswith("alpha 80\n")  # a port in Host
    short_id = lab.inspect("alpha")["id"][:12]
    assert get(lab, f"{short_id}.{DOMAIN}")[1].startswith("alpha 80\n")
    # A real name, as a browser sends it: *.localhost is loopback without any DNS.
    url = f"http://alpha.{DOMAIN}:41005/path?q=1"
    body = in_ns(lab.netns, "curl", "-s", "-m", "30", url).stdout
    assert body.startswith("alpha 80\nGET /path?q=1 HTTP/1.1")
    # One kept-alive client connection, two VMs: each request goes where its Host says.
    lines = in_ns(
        lab.netns, sys.executable, "-c", KEEP_ALIVE, PROXY, f"alpha.{DOMAIN}", f"beta.{DOMAIN}",
        f"8080-alpha.{DOMAIN}",
    ).stdout.split()  # fmt: skip
    assert lines == ["alpha", "80", "beta", "80", "alpha", "8080"]


@pytest.mark.vm
def test_the_server_sees_forwarded_headers(lab: Hyprd) -> None:
    status, body = get(lab, f"8080-alpha.{DOMAIN}")
    headers = {
        name.lower(): value.strip()
        for name, _, value in (line.partition(":") for line in body.splitlines()[2:])
    }
    assert status == 200
    assert headers["x-forwarded-for"] == "127.0.0.1"  # the client's "203.0.113.9" is dropped
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == f"8080-alpha.{DOMAIN}"
    assert headers["host"] == f"8080-alpha.{DOMAIN}"


@pytest.mark.vm
def test_websocket_passes_and_outlives_a_route_change(lab: Hyprd, server: str) -> None:
    client = subprocess.Popen(
        ["ip", "netns", "exec", lab.netns, sys.executable, "-c", WEBSOCKET, PROXY,
         f"alpha.{DOMAIN}"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert client.stdin is not None and client.stdout is not None
    assert client.stdout.readline().strip() == "HTTP/1.1 101 Switching Protocols"
    assert client.stdout.readline().strip() == "first"
    run_server_vm(lab, server, "delta", [80], [80])  # a new VM: new routes
    wait_for(lambda: serving(lab, f"delta.{DOMAIN}", "delta 80"))
    client.stdin.write("go\n")
    client.stdin.flush()
    assert client.stdout.readline().strip() == "second"  # the same connection still echoes
    assert client.wait(30) == 0
    lab.ok("rm", "-f", "delta")
    wait_for(lambda: get(lab, f"delta.{DOMAIN}")[0] == 404)


@pytest.mark.vm
def test_names_that_are_no_vm_get_a_404_naming_them(lab: Hyprd) -> None:
    status, body = get(lab, f"nosuch.{DOMAIN}")
    assert (status, body) == (404, f"no VM named 'nosuch' (nosuch.{DOMAIN})")
    status, body = get(lab, f"81-alpha.{DOMAIN}")
    assert (status, body) == (404, "VM alpha does not expose port 81 (it exposes 80, 8080, 9090)")
    status, body = get(lab, "example.com")
    assert status == 404 and f"example.com is not <vm>.{DOMAIN}" in body


@pytest.mark.vm
def test_a_stopped_vm_gets_a_502_saying_so(lab: Hyprd) -> None:
    assert get(lab, f"gamma.{DOMAIN}") == (502, "VM gamma is not running (it is exited)")


@pytest.mark.vm
def test_refused_and_unanswered_connections_say_which_vm(lab: Hyprd) -> None:
    status, body = get(lab, f"9090-alpha.{DOMAIN}")
    assert status == 502 and body.startswith("VM alpha, port 9090: the connection was refused")
    # The VM's port drops connections (a rule in the lab's namespace): no answer in time.
    address = lab.inspect("alpha")["guest_ip"]
    nft = f"""
    table ip prox_test {{
        chain out {{
            type filter hook output priority 0;
            ip daddr {address} tcp dport 9090 drop
        }}
    }}
    """
    nft_cmd = ["ip", "netns", "exec", lab.netns, "nft", "-f", "-"]
    subprocess.run(nft_cmd, input=nft, text=True, check=True)
    try:
        status, body = get(lab, f"9090-alpha.{DOMAIN}")
        assert status == 504 and "VM alpha, port 9090: the VM did not accept" in body
    finally:
        in_ns(lab.netns, "nft", "delete", "table", "ip", "prox_test")


@pytest.mark.vm
def test_the_gate_relays_to_a_running_vm(lab: Hyprd) -> None:
    """What a woken VM's request goes through before its route is in the map."""
    gate = lab.run_dir / "proxy" / "gate.sock"
    result = in_ns(
        lab.netns, "curl", "-s", "-m", "30", "--unix-socket", str(gate),
        "-H", f"Host: 8080-alpha.{DOMAIN}", "http://gate/x",
    )  # fmt: skip
    assert result.stdout.startswith("alpha 8080\nGET /x HTTP/1.1")


@pytest.mark.vm
def test_routes_survive_hyprd_and_follow_its_restart(lab: Hyprd) -> None:
    pid = haproxy_pid(lab)
    lab.stop()
    # hyprd is gone: HAProxy still serves the running VMs, and says why it cannot answer
    # for the others.
    assert get(lab, f"alpha.{DOMAIN}")[1].startswith("alpha 80\n")
    status, body = get(lab, f"nosuch.{DOMAIN}")
    assert status == 502 and "hyprd is not answering" in body
    lab.start()
    assert haproxy_pid(lab) == pid  # adopted, not restarted
    assert get(lab, f"beta.{DOMAIN}")[1].startswith("beta 80\n")
    lab.ok("stop", "beta")
    assert get(lab, f"beta.{DOMAIN}") == (502, "VM beta is not running (it is exited)")
    # HAProxy dies: hyprd starts it again, with the routes it had.
    os.kill(haproxy_pid(lab), signal.SIGKILL)
    wait_for(lambda: haproxy_pid(lab) != pid and serving(lab, f"alpha.{DOMAIN}", "alpha 80"))
    assert get(lab, f"beta.{DOMAIN}")[0] == 502
