"""What the subdomain proxy's HAProxy reads: its configuration and its routes map.

HAProxy looks the request's Host up in a map (`routes.map`: host -> "ADDRESS/PORT/VM") and
sends the request to that address itself (`set-dst` on a server at 0.0.0.0), so a route
is one map entry that hyprd adds or deletes through the runtime API: HAProxy never reloads,
and no connection through it (a WebSocket included) is cut when another VM starts or stops.
A host with no entry goes to hyprd's gate (hypr.network.proxy_gate), which answers the 404
and the 502 of a VM that is not running, or wakes a sleeping one.

Files, under $HYPR_RUN_DIR/proxy/: haproxy.cfg, haproxy.pid, admin.sock (the runtime API),
routes.map, reasons.map, gate.sock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

CONNECT_TIMEOUT_MS = 5000  # a VM that does not accept a connection in this long: 504
ROUTES = "routes.map"
REASONS = "reasons.map"
# The elapsed time since the request came in, divided by the connect timeout, is 0 when
# the connection failed at once and 1 when it timed out: HAProxy 2.6 answers 503 for both
# and keeps no other trace of why that an error page may show.
REASONS_MAP = (
    "0 the connection was refused (is a server listening on that port in the VM?)\n"
    f"1 the VM did not accept the connection within {CONNECT_TIMEOUT_MS // 1000}s\n"
)


@dataclass(frozen=True)
class Route:
    """A running VM the proxy reaches: its names, its address and its exposed TCP ports
    (the first is the one `<vm>.<domain>` leads to)."""

    names: Sequence[str]  # the VM's name and short id, as subdomain labels
    vm: str  # the name the error pages show
    address: IPv4Address
    ports: Sequence[int]


def map_entries(routes: Iterable[Route], domain: str) -> dict[str, str]:
    """Host -> "ADDRESS/PORT/VM": `<vm>.<domain>` and `<port>-<vm>.<domain>` for each port.
    A VM named like another's port prefix (`80-web`) wins over it: names come first."""
    routes = list(routes)
    entries: dict[str, str] = {}
    for route in routes:
        for port in route.ports:
            for name in route.names:
                entries[f"{port}-{name}.{domain}".lower()] = f"{route.address}/{port}/{route.vm}"
    for route in routes:
        if route.ports:
            value = f"{route.address}/{route.ports[0]}/{route.vm}"
            entries.update({f"{name}.{domain}".lower(): value for name in route.names})
    return entries


def haproxy_config(directory: Path, listen: str) -> str:
    """The whole configuration; it changes only with the listen address."""
    routes, reasons = directory / ROUTES, directory / REASONS
    gate = directory / "gate.sock"
    elapsed = f"date(0,ms),sub(txn.t0),div({CONNECT_TIMEOUT_MS})"
    page = 'content-type "text/plain; charset=utf-8" lf-string'
    vm_port = "VM %[var(txn.vm)], port %[var(txn.port)]"
    why = f"%[{elapsed},map_int({reasons})]"
    no_hyprd = "hyprd is not answering: the proxy cannot tell whether %[var(txn.host)] names a VM"
    return f"""\
# Written by hyprd; routes change at run time in {routes}, not here.
global
    daemon
    pidfile {directory / "haproxy.pid"}
    stats socket {directory / "admin.sock"} mode 600 level admin

defaults
    mode http
    timeout connect {CONNECT_TIMEOUT_MS}ms
    timeout client 1h
    timeout server 1h
    timeout tunnel 1h
    timeout http-request 30s
    retries 0

frontend proxy
    bind {listen}
    http-request set-var(txn.t0) date(0,ms)
    http-request set-var(txn.host) req.hdr(host),field(1,:),lower
    http-request set-var(txn.route) var(txn.host),map({routes})
    # What a client says it forwarded is not believed: the proxy is the first hop it knows.
    http-request del-header X-Forwarded-For
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    option forwardfor
    use_backend vm if {{ var(txn.route) -m found }}
    default_backend gate

backend vm
    http-request set-var(txn.vm) var(txn.route),field(3,/)
    http-request set-var(txn.port) var(txn.route),field(2,/)
    http-request set-dst var(txn.route),field(1,/),ipmask(32)
    http-request set-dst-port var(txn.port)
    http-error status 503 {page} "{vm_port}: {why}\\n"
    http-error status 504 {page} "{vm_port}: no answer in time\\n"
    http-after-response set-status 504 if {{ status 503 }} {{ {elapsed} -m int ge 1 }}
    http-after-response set-status 502 reason "Bad Gateway" if {{ status 503 }}
    server vm 0.0.0.0:0

backend gate
    option http-server-close
    http-reuse never
    http-error status 503 {page} "{no_hyprd}\\n"
    http-after-response set-status 502 reason "Bad Gateway" if {{ status 503 }}
    server gate unix@{gate}
"""
