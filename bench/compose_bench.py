"""Compose benchmark (issue 5), side by side in one run, in a namespace made for the run:

  * `hypr compose up -d` of a 10-service stack on 3 networks, until every service with a
    healthcheck is healthy, then `hypr compose down`;
  * the same 10 VMs started one by one with `hypr run -d` (and removed one by one).
Goal: up at least 2x faster than one by one (independent services boot in parallel).

Usage: .venv/bin/python bench/compose_bench.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from hypr.sandbox import Hyprd, create_netns, delete_netns

NETWORKS = ("front", "middle", "back")
SERVICES = 10


def stack_file() -> dict[str, object]:
    """Ten independent services spread over three networks, each with a healthcheck."""
    services = {}
    for i in range(SERVICES):
        services[f"svc{i}"] = {
            "image": "busybox",
            "command": ["sleep", "3600"],
            "networks": [NETWORKS[i % 3]],
            "healthcheck": {"test": ["CMD", "true"], "interval": "1s", "start_interval": "1s"},
        }
    return {"services": services, "networks": {name: None for name in NETWORKS}}


def compose_cycle(daemon: Hyprd, workdir: Path) -> tuple[float, float]:
    start = time.perf_counter()
    daemon.ok("compose", "-f", str(workdir / "compose.yaml"), "-p", "bench", "up", "-d")
    deadline = time.monotonic() + 300
    while True:
        with daemon.api() as api:
            stack = api.get("/stacks/bench").json()
        health = [vm.get("health") for vm in stack["vms"]]
        if health and all(h == "healthy" for h in health):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"stack did not become healthy: {health}")
        time.sleep(0.1)
    up = time.perf_counter() - start
    start = time.perf_counter()
    daemon.ok("compose", "-f", str(workdir / "compose.yaml"), "-p", "bench", "down")
    return up, time.perf_counter() - start


def one_by_one(daemon: Hyprd) -> tuple[float, float]:
    for name in NETWORKS:
        daemon.ok("network", "create", f"seq_{name}")
    start = time.perf_counter()
    for i in range(SERVICES):
        daemon.ok(
            "run",
            "-d",
            "--name",
            f"seq{i}",
            "--network",
            f"seq_{NETWORKS[i % 3]}",
            "busybox",
            "sleep",
            "3600",
        )
        daemon.ok("exec", f"seq{i}", "true")  # the same check the healthcheck makes
    up = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(SERVICES):
        daemon.ok("rm", "-f", f"seq{i}")
    for name in NETWORKS:
        daemon.ok("network", "rm", f"seq_{name}")
    return up, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hypr-bench-") as tmp:
        root = Path(tmp)
        (root / "compose.yaml").write_text(yaml.safe_dump(stack_file()))
        ns = create_netns("hyprbench")
        try:
            daemon = Hyprd(ns, root / "daemon")
            daemon.start()
            compose_runs = [compose_cycle(daemon, root) for _ in range(args.runs)]
            sequential_runs = [one_by_one(daemon) for _ in range(args.runs)]
        finally:
            delete_netns(ns)
    c_up = statistics.median(r[0] for r in compose_runs)
    c_down = statistics.median(r[1] for r in compose_runs)
    s_up = statistics.median(r[0] for r in sequential_runs)
    s_down = statistics.median(r[1] for r in sequential_runs)
    print(
        f"compose up -d to all healthy ({SERVICES} services, 3 networks)  "
        f"median {c_up:6.2f} s   down {c_down:6.2f} s"
    )
    print(
        f"hypr run -d one by one, to exec-ready ({SERVICES} VMs)          "
        f"median {s_up:6.2f} s   rm   {s_down:6.2f} s"
    )
    speedup = s_up / c_up
    print(
        f"speed-up of compose up over one by one: {speedup:.2f}x (goal >= 2x: "
        f"{'met' if speedup >= 2 else 'MISSED'}; {args.runs} runs each)"
    )


if __name__ == "__main__":
    main()
