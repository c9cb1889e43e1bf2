"""Networks and IPAM benchmark (issue 2).

Prints, in one run:
  * `network create` + `network rm` latency through the REST API of a real hyprd running in a
    namespace made for this run (p50, p95 over 50 pairs);
  * IPAM allocation time at 0 %, 50 % and 99 % fill of a /16 (p50 over 200 allocations each,
    fill made by allocating everything then releasing random addresses, so the pool is
    fragmented), and the total time to fill all 65,534 addresses.
Goals: allocation at 99 % within 2x of 0 %; filling a /16 in under 10 s.

Run: .venv/bin/python bench/network_bench.py
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from hypr.network.ipam import Ipam
from hypr.sandbox import Hyprd, create_netns, delete_netns
from hypr.state.db import Database
from hypr.state.networks import NetworkRecord, NetworkRepository

SAMPLES = 200


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_network_lifecycle(root: Path) -> tuple[float, float]:
    ns = create_netns("hyprbench")
    try:
        daemon = Hyprd(ns, root)
        daemon.start()
        samples = []
        with daemon.api() as api:
            for i in range(50):
                start = time.perf_counter()
                created = api.post("/networks/create", json={"Name": f"bench{i}"})
                assert created.status_code == 201, created.text
                removed = api.delete(f"/networks/bench{i}")
                assert removed.status_code == 204, removed.text
                samples.append(time.perf_counter() - start)
        daemon.stop()
        return statistics.median(samples), percentile(samples, 0.95)
    finally:
        delete_netns(ns)


def timed_allocations(ipam: Ipam, net_id: str) -> list[float]:
    samples = []
    for _ in range(SAMPLES):
        start = time.perf_counter()
        ipam.allocate(net_id, "bench")
        samples.append(time.perf_counter() - start)
    return samples


def bench_ipam(root: Path) -> dict[str, float]:
    db = Database(root / "ipam.db")
    db.migrate()
    subnet = IPv4Network("10.88.0.0/16")
    gateway = IPv4Address("10.88.0.1")
    net = NetworkRecord("b" * 64, "bench", "bridge", subnet, gateway, "vbr0", False, "now")
    NetworkRepository(db).add(net)
    ipam = Ipam(db)
    ipam.create_pool(net.id, subnet, gateway)
    size = ipam.free_count(net.id)

    result = {"alloc_0": statistics.median(timed_allocations(ipam, net.id))}
    for address in list(ipam.allocations(net.id)):
        ipam.release(net.id, address)

    start = time.perf_counter()
    for _ in range(size):
        ipam.allocate(net.id, "bench")
    result["fill"] = time.perf_counter() - start

    rng = random.Random(7)
    allocated = list(ipam.allocations(net.id))
    rng.shuffle(allocated)
    for fill_name, fill in (("alloc_99", 0.99), ("alloc_50", 0.50)):
        while ipam.free_count(net.id) < size * (1 - fill) + SAMPLES:
            ipam.release(net.id, allocated.pop())
        result[fill_name] = statistics.median(timed_allocations(ipam, net.id))
    db.close()
    return result


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="hypr-bench-") as tmp:
        p50, p95 = bench_network_lifecycle(Path(tmp))
        ipam = bench_ipam(Path(tmp))
    print(f"network create+rm via API    p50 {p50 * 1000:7.2f} ms   p95 {p95 * 1000:7.2f} ms")
    print(f"IPAM allocation, 0% fill     p50 {ipam['alloc_0'] * 1e6:7.1f} us")
    print(f"IPAM allocation, 50% fill    p50 {ipam['alloc_50'] * 1e6:7.1f} us")
    print(f"IPAM allocation, 99% fill    p50 {ipam['alloc_99'] * 1e6:7.1f} us")
    ratio = ipam["alloc_99"] / ipam["alloc_0"]
    print(
        f"ratio 99% / 0% fill          {ratio:5.2f}x   (goal <= 2.00x: "
        f"{'met' if ratio <= 2 else 'MISSED'})"
    )
    print(
        f"fill a /16 (65,534 allocs)   {ipam['fill']:6.2f} s   (goal < 10 s: "
        f"{'met' if ipam['fill'] < 10 else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
