"""MicroVM benchmark (issue 3), side by side in one run:

  start     `hypr run -d` to exec-ready, through the API and through the CLI, against a bare
            QEMU boot of the same kernel and initramfs to init (the agent's probe marker).
            hypr's overhead = the difference of the p50s; goal: under 150 ms. The API time
            is split: host before the spawn, QEMU's start, QEMU to the guest kernel, the
            guest's steps (kestrel's boot line, see boot_split.py), host after ready.
  netsetup  host-side network set-up per VM measured alone (address from IPAM, TAP created,
            attached to the bridge and up): p50/p95 with 1 and with 200 VMs' worth of TAPs
            present; goal: under 5 ms p50 and no growth with the count.
  density   how many idle VMs (the smallest memory that boots, 96 MiB) run at once on this
            machine with each still answering exec within 2 s.

Everything runs in network namespaces made for the run. Usage:
  .venv/bin/python bench/vm_bench.py [start|netsetup|density|all] [--runs N] [--max-vms N]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from boot_split import bare_boot, parse_boot_line, print_split, spans
from hypr.sandbox import BIN, DEFAULT_ASSETS, Hyprd, create_netns, delete_netns, in_ns

ASSETS = Path(os.environ.get("HYPR_ASSETS_DIR", str(DEFAULT_ASSETS)))
EXEC_DEADLINE = 2.0
DENSITY_MEMORY = "96m"


def p50(values: list[float]) -> float:
    return statistics.median(values)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def ms(value: float) -> str:
    return f"{value * 1000:8.1f} ms"


# --- start latency ---------------------------------------------------------------------


def boot_seconds_sum(ns: str) -> float:
    """hyprd's hypr_vm_boot_seconds_sum: QEMU running (create returned) to agent ready."""
    out = in_ns(ns, "curl", "-s", "http://127.0.0.1:41002/metrics").stdout
    match = re.search(r"^hypr_vm_boot_seconds_sum ([0-9.e+-]+)$", out, re.M)
    return float(match.group(1)) if match else 0.0


def hypr_start(daemon: Hyprd, runs: int) -> tuple[list[dict[str, float]], list[float]]:
    """`run -d` returns once the agent reports ready, i.e. when exec works: that moment is
    exec-ready. Each run is split (ms) with the per-VM initrd's mtime (written just before
    QEMU is spawned), the agent socket's ctime (QEMU made it), hyprd's boot metric and the
    guest's own boot line. The CLI (run -d + exec) is timed on its own."""
    samples, cli = [], []
    with daemon.api() as api:
        for i in range(runs):
            before = boot_seconds_sum(daemon.netns)
            start_wall, start = time.time(), time.perf_counter()
            created = api.post(
                "/vms", json={"image": "busybox", "name": f"s{i}", "command": ["sleep", "600"]}
            )
            ready = time.perf_counter() - start
            assert created.status_code == 201, created.text
            start = time.perf_counter()
            result = api.post(f"/vms/s{i}/exec", json={"command": ["true"]})
            first_exec = time.perf_counter() - start
            assert result.json()["exit_code"] == 0
            run_dir = daemon.run_dir / "vms" / created.json()["id"][:16]
            spawn = (run_dir / "initrd.cpio").stat().st_mtime
            socket = (run_dir / "agent.sock").stat().st_ctime
            boot = boot_seconds_sum(daemon.netns) - before
            dmesg = api.post(f"/vms/s{i}/exec", json={"command": ["dmesg"]}).json()["stdout"]
            marks = parse_boot_line(dmesg)
            samples.append(
                {
                    "total": ready * 1000,
                    "host": (spawn - start_wall) * 1000,
                    "qemu_start": (socket - spawn) * 1000,
                    "qemu_to_kernel": boot * 1000 - marks["ready"],
                    "after_ready": (start_wall + ready - socket - boot) * 1000,
                    "first_exec": first_exec * 1000,
                    **spans(marks),
                }
            )
            api.delete(f"/vms/s{i}", params={"force": True})

            start = time.perf_counter()
            daemon.ok("run", "-d", "--name", f"c{i}", "busybox", "sleep", "600")
            daemon.ok("exec", f"c{i}", "true")
            cli.append(time.perf_counter() - start)
            api.delete(f"/vms/c{i}", params={"force": True})
    return samples, cli


def bench_start(root: Path, runs: int) -> None:
    ns = create_netns("hyprbench")
    try:
        daemon = Hyprd(ns, root / "start")
        daemon.start()
        samples, cli_samples = hypr_start(daemon, runs)
        bare = bare_boot(ASSETS, runs)
    finally:
        delete_netns(ns)
    api = [s["total"] / 1000 for s in samples]

    def col(key: str) -> str:
        return ms(p50([s[key] for s in samples]) / 1000)

    overhead = p50(api) - p50(bare)
    print(f"start: bare QEMU boot to init      p50 {ms(p50(bare))}  p95 {ms(p95(bare))}")
    print(
        f"start: hypr run -d to exec-ready (API) p50 {ms(p50(api))}  "
        f"p95 {ms(p95(api))}  ratio {p50(api) / p50(bare):.2f}x"
    )
    print(f"start:   host before QEMU spawn     p50 {col('host')}")
    print(f"start:   QEMU start (agent socket) p50 {col('qemu_start')}")
    print(f"start:   QEMU to guest kernel      p50 {col('qemu_to_kernel')}")
    print_split("start:  ", samples)
    print(f"start:   host after agent ready    p50 {col('after_ready')}")
    print(f"start: first exec after ready (API)    p50 {col('first_exec')}")
    print(
        f"start: hypr run -d + exec (CLI)    p50 {ms(p50(cli_samples))}  "
        f"p95 {ms(p95(cli_samples))}  ratio {p50(cli_samples) / p50(bare):.2f}x"
    )
    print(
        f"start: hypr overhead (API p50 - bare p50) {overhead * 1000:.0f} ms "
        f"(goal < 150 ms: {'met' if overhead < 0.150 else 'MISSED'})"
    )


# --- host-side network set-up ----------------------------------------------------------

NETSETUP_SCRIPT = """
import asyncio, json, sys, time
from ipaddress import IPv4Address, IPv4Network
from pyroute2 import AsyncIPRoute
from hypr.network.bridge import ensure_bridge
from hypr.network.ipam import Ipam
from hypr.network.tap import create_tap, delete_tap
from hypr.state.db import Database
from hypr.state.networks import NetworkRecord, NetworkRepository

async def main(db_path, background, samples):
    db = Database(db_path); db.migrate()
    subnet, gw = IPv4Network("10.88.0.0/16"), IPv4Address("10.88.0.1")
    net = NetworkRecord("n" * 64, "bench", "bridge", subnet, gw, "vbr0", False, "now")
    NetworkRepository(db).add(net)
    ipam = Ipam(db); ipam.create_pool(net.id, subnet, gw)
    async with AsyncIPRoute() as ipr:
        await ensure_bridge(ipr, "vbr0", net.id, gw, subnet)
        for i in range(background):
            ipam.allocate(net.id, f"bg{i}")
            await create_tap(ipr, f"tap{i}", "vbr0", f"bg{i}", 1500)
        times = []
        for i in range(samples):
            name, owner = f"tap{background + i}", f"vm{i}"
            start = time.perf_counter()
            ipam.allocate(net.id, owner)
            await create_tap(ipr, name, "vbr0", owner, 1500)
            times.append(time.perf_counter() - start)
            await delete_tap(ipr, name)
            ipam.release_owner(owner)
    print(json.dumps(times))

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


def bench_netsetup(root: Path, samples: int = 100) -> None:
    import json

    results = {}
    for background in (0, 199):
        ns = create_netns("hyprbench")
        try:
            out = in_ns(
                ns,
                str(BIN / "python"),
                "-c",
                NETSETUP_SCRIPT,
                str(root / f"net{background}.db"),
                str(background),
                str(samples),
            )
            results[background + 1] = json.loads(out.stdout)
        finally:
            delete_netns(ns)
    for count, times in results.items():
        print(
            f"netsetup: VM #{count:<3} (IPAM + TAP + attach + up)  p50 {ms(p50(times))}  "
            f"p95 {ms(p95(times))}"
        )
    growth = p50(results[200]) / p50(results[1])
    print(
        f"netsetup: ratio 200 / 1: {growth:.2f}x (goal: p50 < 5 ms "
        f"{'met' if p50(results[200]) < 0.005 else 'MISSED'}, no growth "
        f"{'met' if growth < 1.5 else 'MISSED'})"
    )


# --- density -------------------------------------------------------------------------


def exec_latencies(daemon: Hyprd, names: list[str]) -> list[float]:
    def one(name: str) -> float:
        start = time.perf_counter()
        with daemon.api(timeout=30) as api:
            response = api.post(f"/vms/{name}/exec", json={"command": ["true"]})
        if response.status_code != 200 or response.json()["exit_code"] != 0:
            return float("inf")
        return time.perf_counter() - start

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(one, names))


def bench_density(root: Path, max_vms: int, step: int = 10) -> None:
    ns = create_netns("hyprbench")
    try:
        daemon = Hyprd(ns, root / "density")
        daemon.start()
        names: list[str] = []
        good = 0
        worst = 0.0
        started = time.monotonic()
        with daemon.api() as api:
            while len(names) < max_vms:
                batch = [f"d{len(names) + i}" for i in range(step)]

                def boot(name: str) -> bool:
                    with daemon.api() as client:
                        return (
                            client.post(
                                "/vms",
                                json={
                                    "image": "busybox",
                                    "name": name,
                                    "memory_mib": 96,
                                    "command": ["sleep", "100000"],
                                },
                            ).status_code
                            == 201
                        )

                with ThreadPoolExecutor(2) as pool:
                    booted = list(pool.map(boot, batch))
                names += [n for n, ok in zip(batch, booted, strict=True) if ok]
                latencies = exec_latencies(daemon, names)
                worst = max(latencies)
                print(
                    f"density: {len(names):4d} VMs running, exec latency p50 "
                    f"{ms(p50(latencies))}, max {ms(worst)}",
                    flush=True,
                )
                if not all(booted) or worst > EXEC_DEADLINE:
                    break
                good = len(names)
            api.get("/_ping")
        print(
            f"density: {good} idle VMs of {DENSITY_MEMORY} each answered exec within "
            f"{EXEC_DEADLINE:.0f} s (cap {max_vms}; {time.monotonic() - started:.0f} s)"
        )
    finally:
        delete_netns(ns)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "part", nargs="?", default="all", choices=["start", "netsetup", "density", "all"]
    )
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--max-vms", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hypr-bench-") as tmp:
        root = Path(tmp)
        if args.part in ("start", "all"):
            bench_start(root, args.runs)
        if args.part in ("netsetup", "all"):
            bench_netsetup(root)
        if args.part in ("density", "all"):
            bench_density(root, args.max_vms)


if __name__ == "__main__":
    main()
