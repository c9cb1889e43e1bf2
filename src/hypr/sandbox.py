"""Throw-away network namespaces with a real hyprd inside, for tests, benchmarks and demos.

Everything such a run creates (bridges, TAPs, nftables tables, dnsmasq, QEMU) lives in a
namespace that it made itself, and deleting the namespace, after killing what runs in it,
removes all of it, also when the run fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

BIN = Path(sys.executable).parent
DEFAULT_ASSETS = Path(sys.prefix) / "share" / "hypr"


def sh(
    *args: str, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True, input=input)


def in_ns(ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh("ip", "netns", "exec", ns, *args, check=check)


def create_netns(prefix: str = "hyprt") -> str:
    name = f"{prefix}-{secrets.token_hex(4)}"
    sh("ip", "netns", "add", name)
    in_ns(name, "ip", "link", "set", "lo", "up")
    return name


def delete_netns(name: str) -> None:
    """Kill everything running in a namespace, then delete it."""
    pids = sh("ip", "netns", "pids", name, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    deadline = time.monotonic() + 5
    while pids and time.monotonic() < deadline:
        time.sleep(0.02)
        pids = sh("ip", "netns", "pids", name, check=False).stdout.split()
    sh("ip", "netns", "del", name, check=False)


class Hyprd:
    """A real hyprd inside a namespace, with its own run and data directories."""

    def __init__(self, netns: str, root: Path, env: dict[str, str] | None = None) -> None:
        self.netns = netns
        self.run_dir = root / "run"
        self.data_dir = root / "data"
        self.log_path = root / "hyprd.log"
        self.extra_env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HYPR_RUN_DIR": str(self.run_dir),
            "HYPR_DATA_DIR": str(self.data_dir),
            "HYPR_ASSETS_DIR": os.environ.get("HYPR_ASSETS_DIR", str(DEFAULT_ASSETS)),
            **self.extra_env,
        }

    @property
    def socket(self) -> Path:
        return self.run_dir / "hypr.sock"

    @property
    def docker_env(self) -> dict[str, str]:
        """The environment that points Docker's clients (CLI, compose, SDK) at this daemon."""
        return {**os.environ, "DOCKER_HOST": f"unix://{self.run_dir / 'docker.sock'}"}

    def docker(
        self, *args: str, input: str | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run the real `docker` CLI against this daemon's Docker API."""
        return subprocess.run(
            ["docker", *args], env=self.docker_env, capture_output=True, text=True,
            input=input, timeout=timeout,
        )  # fmt: skip

    def start(self, timeout: float = 60) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, str(BIN / "hyprd")],
                env=self.env,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hyprd exited at start-up:\n{self.log()}")
            try:
                with self.api() as api:
                    if api.get("/_ping").status_code == 200:
                        return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"hyprd did not come up:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self.proc = None
        return code

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def api(self, timeout: float = 300) -> httpx.Client:
        return httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.socket)),
            base_url="http://hypr",
            timeout=timeout,
        )

    def hypr(
        self, *args: str, check: bool = False, input: str | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run the CLI; it needs no namespace, only the socket."""
        result = subprocess.run(
            [str(BIN / "hypr"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"hypr {' '.join(args)} failed: {result.stderr}")
        return result

    def ok(self, *args: str, input: str | None = None) -> str:
        return self.hypr(*args, check=True, input=input).stdout

    def inspect(self, vm: str) -> dict[str, Any]:
        """`hypr inspect` of one VM."""
        return dict(json.loads(self.ok("inspect", vm))[0])

    def dns_servers(self) -> list[tuple[str, int]]:
        """(directory name, pid) of every dnsmasq process of this daemon."""
        prefix = f"--conf-file={self.run_dir / 'dns'}/"
        found = []
        for pid in sh("ip", "netns", "pids", self.netns, check=False).stdout.split():
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            except OSError:
                continue
            for arg in argv:
                if arg.startswith(prefix):
                    found.append((Path(arg.removeprefix("--conf-file=")).parent.name, int(pid)))
        return sorted(found)

    def nft(self) -> list[dict[str, Any]]:
        """The namespace's whole ruleset, as `nft -j` shows it."""
        out = in_ns(self.netns, "nft", "-j", "list", "ruleset").stdout
        return list(json.loads(out)["nftables"])

    def db_rows(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.data_dir / "hypr.db") as conn:
            return conn.execute(query, params).fetchall()


def wait_for(predicate: Callable[[], bool], timeout: float = 60, every: float = 0.1) -> None:
    """Poll until `predicate` holds; fail the caller after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(every)


# The uplink between a daemon's namespace and an "upstream" namespace (TEST-NET-1 addresses).
UPLINK_ADDRESS = "192.0.2.1"
UPSTREAM_ADDRESS = "192.0.2.2"


def veth(ns_a: str, name_a: str, ns_b: str, name_b: str) -> None:
    """A veth pair with one end in each namespace."""
    sh("ip", "link", "add", name_a, "netns", ns_a, "type", "veth",
       "peer", "name", name_b, "netns", ns_b)  # fmt: skip


def connect(
    ns: str, peer: str, host_end: str, host_cidr: str, peer_cidr: str, route: bool = True
) -> None:
    """A routed link from `ns` to `peer`: `host_end` in `ns`, eth0 in `peer`, and (with
    `route`) the peer's default route through `ns`."""
    veth(ns, host_end, peer, "eth0")
    in_ns(ns, "ip", "addr", "add", host_cidr, "dev", host_end)
    in_ns(ns, "ip", "link", "set", host_end, "up")
    in_ns(peer, "ip", "addr", "add", peer_cidr, "dev", "eth0")
    in_ns(peer, "ip", "link", "set", "eth0", "up")
    if route:
        in_ns(peer, "ip", "route", "add", "default", "via", host_cidr.split("/")[0])


def add_upstream(ns: str, upstream: str) -> None:
    """Put `upstream` behind an uplink of `ns`, as the internet would be: it has no route
    back to hypr's subnets, so only masquerade lets it answer a VM."""
    connect(ns, upstream, "uplink", f"{UPLINK_ADDRESS}/24", f"{UPSTREAM_ADDRESS}/24", route=False)


def plug_endpoint(ns: str, endpoint: str, bridge: str, address: str, gateway: str) -> None:
    """Connect an endpoint namespace to a hypr bridge in `ns`, as a VM's TAP would be."""
    host_end = f"ve{endpoint[-6:]}"
    veth(ns, host_end, endpoint, "eth0")
    in_ns(ns, "ip", "link", "set", host_end, "master", bridge, "up")
    in_ns(endpoint, "ip", "addr", "add", address, "dev", "eth0")
    in_ns(endpoint, "ip", "link", "set", "eth0", "up")
    in_ns(endpoint, "ip", "route", "add", "default", "via", gateway)


@contextlib.contextmanager
def throwaway_hyprd(prefix: str = "hyprb") -> Iterator[Hyprd]:
    """A hyprd in a namespace and directories of its own, all gone afterwards (benchmarks)."""
    ns = create_netns(prefix)
    root = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    try:
        hyprd = Hyprd(ns, root)
        hyprd.start()
        yield hyprd
    finally:
        delete_netns(ns)
        shutil.rmtree(root, ignore_errors=True)
