"""Port forwarding benchmark (issue 4), side by side in one run:

  throughput  TCP with iperf3 from a client namespace, routed to hyprd's namespace through an
              uplink, to a server namespace plugged into hypr's default network as an endpoint
              (a veth in vbr0, as a VM's TAP would be): direct to the server's address, then
              through a published port. Both cross the same routing hop, conntrack and
              forward chain; the published path adds the DNAT map lookup. hypr lets nothing
              from outside into a network unless it is published, so for the direct run the
              benchmark opens the forward chain to the client with one rule of its own.
              The forward is added by NftablesFirewall.add_forwards, the call hyprd makes
              when a VM starts (a VM record would need a booted VM at the server's address).
              Goal: forwarded >= 0.9x direct.
  add         the time to add one forward (claim in the creation transaction, then publish:
              held socket and map element) with 1, 1,000 and 10,000 forwards in place,
              through PortForwarder, the service hyprd runs, on a database and an nftables
              table of its own. Goal: at 10,000 within 2x of 1.

Everything runs in network namespaces made for the run; the parts that touch nftables run
this script again inside them. Usage: .venv/bin/python bench/ports_bench.py [--seconds N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from hypr.daemon.ports import PortForwarder
from hypr.network.firewall import NftablesFirewall
from hypr.sandbox import (
    UPLINK_ADDRESS,
    UPSTREAM_ADDRESS,
    Hyprd,
    connect,
    create_netns,
    delete_netns,
    in_ns,
    plug_endpoint,
)
from hypr.state.db import Database
from hypr.state.networks import NetworkRecord, NetworkRepository
from hypr.state.ports import ANY_ADDRESS, PortForward
from hypr.state.vms import NicRecord, PublishRequest, VmRecord, VmRepository, VmSpec

SERVER = IPv4Address("10.88.0.200")
IPERF_PORT = 5201
PUBLISHED_PORT = 15201
LEVELS = (1, 1_000, 10_000)
SAMPLES = 50
PORTS_PER_VM = 100  # the forwards in place come as VMs publishing ranges of this size


# --- throughput ------------------------------------------------------------------------


def iperf(client: str, address: str, port: int, seconds: int) -> float:
    """Received bits per second of one iperf3 run."""
    out = in_ns(client, "iperf3", "-J", "-c", address, "-p", str(port), "-t", str(seconds))
    return float(json.loads(out.stdout)["end"]["sum_received"]["bits_per_second"])


def bench_throughput(root: Path, seconds: int, runs: int) -> list[tuple[float, float]]:
    """(direct, forwarded) bits per second of back-to-back pairs of runs."""
    host, server, client = (create_netns("hyprbench") for _ in range(3))
    iperf_server = None
    try:
        hyprd = Hyprd(host, root)
        hyprd.start()
        plug_endpoint(host, server, "vbr0", f"{SERVER}/16", "10.88.0.1")
        connect(host, client, "uplink", f"{UPLINK_ADDRESS}/24", f"{UPSTREAM_ADDRESS}/24")
        iperf_server = subprocess.Popen(
            ["ip", "netns", "exec", server, "iperf3", "-s", "-p", str(IPERF_PORT)],
            stdout=subprocess.DEVNULL,
        )
        in_ns(host, sys.executable, __file__, "--publish-in-namespace")
        # the direct path may enter the network only through a hole made for the benchmark
        hole = f"insert rule inet hypr forward ip saddr {UPSTREAM_ADDRESS} ct status ! dnat accept"
        in_ns(host, "nft", hole)
        time.sleep(0.5)  # iperf3 -s is listening by now
        pairs = []
        for run in range(runs):  # in pairs, in turns first, so that load hits both alike
            paths = [(str(SERVER), IPERF_PORT), (UPLINK_ADDRESS, PUBLISHED_PORT)]
            order = paths if run % 2 == 0 else paths[::-1]
            rates = {port: iperf(client, address, port, seconds) for address, port in order}
            pairs.append((rates[IPERF_PORT], rates[PUBLISHED_PORT]))
        hyprd.stop()
        return pairs
    finally:
        if iperf_server is not None:
            iperf_server.kill()
        for ns in (host, server, client):
            delete_netns(ns)


def publish_in_namespace() -> None:
    """Inside hyprd's namespace: publish the iperf3 port as hyprd does for a VM."""
    forward = PortForward("tcp", ANY_ADDRESS, PUBLISHED_PORT, IPERF_PORT)
    NftablesFirewall().add_forwards([forward], SERVER)


# --- time to add a forward -------------------------------------------------------------


class Fleet:
    """Fake VMs (rows only) on one network, published through the real PortForwarder."""

    def __init__(self, root: Path) -> None:
        self.db = Database(root / "ports.db")
        self.db.migrate()
        firewall = NftablesFirewall()
        firewall.setup([])
        self.forwarder = PortForwarder(self.db, firewall, range(2200, 2300))
        self.network = NetworkRecord(
            "b" * 64, "bench", "bridge", IPv4Network("10.88.0.0/16"),
            IPv4Address("10.88.0.1"), "vbr0", False, "now",
        )  # fmt: skip
        NetworkRepository(self.db).add(self.network)
        self.rows = VmRepository(self.db)
        self.count = 0
        self.next_port = 10_000

    async def run(self, ports: int) -> VmRecord:
        """Create a VM publishing `ports` consecutive host ports, and start it: its row,
        then what PortForwarder does in the creation transaction and before the boot."""
        span = f"{self.next_port}-{self.next_port + ports - 1}"
        self.next_port += ports
        self.count += 1
        vm_id = f"{self.count:064x}"
        address = self.network.subnet.network_address + 2 + self.count
        mac = "02:fc:" + ":".join(f"{b:02x}" for b in self.count.to_bytes(4, "big"))
        vm = VmRecord(
            id=vm_id, name=f"vm{self.count}", image="busybox", spec=VmSpec(argv=["true"]),
            state="created", created="now",
            nics=(NicRecord(vm_id, 0, self.network.id, mac, address, None),),
        )  # fmt: skip
        with self.db.transaction():
            self.rows.add(vm)
            self.forwarder.vm_created(vm, PublishRequest(ports=(f"{span}:{span}",)))
        await self.forwarder.vm_starting(vm)
        return vm

    async def remove(self, vm: VmRecord) -> None:
        await self.forwarder.vm_stopped(vm)
        self.rows.remove(vm.id)


async def bench_add_forward() -> dict[int, float]:
    """Inside a namespace of its own: p50 seconds to add one forward at each level."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # one held socket per port
    with tempfile.TemporaryDirectory(prefix="hypr-ports-bench-") as tmp:
        fleet = Fleet(Path(tmp))
        for _ in range(SAMPLES):  # warm up the code paths and caches, then leave no trace
            await fleet.remove(await fleet.run(1))
        in_place = 0
        result = {}
        for level in LEVELS:
            while in_place + PORTS_PER_VM <= level:
                await fleet.run(PORTS_PER_VM)
                in_place += PORTS_PER_VM
            while in_place < level:
                await fleet.run(1)
                in_place += 1
            samples = []
            for _ in range(SAMPLES):
                start = time.perf_counter()
                await fleet.run(1)
                samples.append(time.perf_counter() - start)
            in_place += SAMPLES
            result[level] = statistics.median(samples)
        fleet.db.close()
    return result


def add_forward_in_namespace() -> dict[int, float]:
    ns = create_netns("hyprbench")
    try:
        out = in_ns(ns, sys.executable, __file__, "--add-in-namespace").stdout
        return {int(level): seconds for level, seconds in json.loads(out).items()}
    finally:
        delete_netns(ns)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=4, help="length of one iperf3 run")
    parser.add_argument("--runs", type=int, default=6, help="iperf3 runs per path")
    parser.add_argument("--publish-in-namespace", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--add-in-namespace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publish_in_namespace:
        publish_in_namespace()
        return
    if args.add_in_namespace:
        print(json.dumps(asyncio.run(bench_add_forward())))
        return

    with tempfile.TemporaryDirectory(prefix="hypr-bench-") as tmp:
        pairs = bench_throughput(Path(tmp), args.seconds, args.runs)
    adds = add_forward_in_namespace()
    direct = statistics.median(d for d, _ in pairs)
    forwarded = statistics.median(f for _, f in pairs)
    ratio = statistics.median(f / d for d, f in pairs)
    print(
        f"TCP direct to the endpoint        {direct / 1e9:7.2f} Gbit/s   (median of {len(pairs)})"
    )
    print(f"TCP through the published port    {forwarded / 1e9:7.2f} Gbit/s")
    print(f"ratio forwarded / direct          {ratio:7.2f}x   (median of the pairs' ratios; "
          f"goal >= 0.90x: {'met' if ratio >= 0.9 else 'MISSED'})")  # fmt: skip
    for level, seconds in adds.items():
        print(f"add one forward, {level:>6,} in place  p50 {seconds * 1e3:7.3f} ms")
    growth = adds[LEVELS[-1]] / adds[LEVELS[0]]
    print(f"ratio {LEVELS[-1]:,} / {LEVELS[0]} in place        {growth:7.2f}x   (goal <= 2.00x: "
          f"{'met' if growth <= 2 else 'MISSED'})")  # fmt: skip


if __name__ == "__main__":
    main()
