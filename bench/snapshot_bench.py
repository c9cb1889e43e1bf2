"""Snapshots and idle VMs (issue 14), side by side in one run, in a namespace made for it:

  * `restore`: `hypr start --snapshot` of a stopped web-server VM to its first HTTP answer
    through its published port, against a cold `hypr run -d` of the same VM to its first
    answer. Goal: the restore at least 5x faster.
  * `wake`: the first request to a VM asleep after its idle timeout (held while it is
    restored, then answered), against the same cold start.

Medians of --runs, alternating. Usage: .venv/bin/python bench/snapshot_bench.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time

from hypr.sandbox import Hyprd, in_ns, throwaway_hyprd, wait_for

SERVER = "echo served > /index.html; exec httpd -f -p 80 -h /"


def answers(hyprd: Hyprd, port: int, wait: int = 1) -> bool:
    url = f"http://127.0.0.1:{port}/index.html"
    result = in_ns(hyprd.netns, "curl", "-s", "--max-time", str(wait), url, check=False)
    return result.stdout.strip() == "served"


def first_answer(hyprd: Hyprd, port: int, start: float) -> float:
    while not answers(hyprd, port):
        pass
    return time.perf_counter() - start


def cold(hyprd: Hyprd, port: int) -> float:
    start = time.perf_counter()
    hyprd.ok("run", "-d", "--name", "cold", "-p", f"{port}:80", "busybox", "sh", "-c", SERVER)
    took = first_answer(hyprd, port, start)
    hyprd.ok("rm", "-f", "cold")
    return took


def restore(hyprd: Hyprd, port: int) -> float:
    hyprd.ok("stop", "saved")
    start = time.perf_counter()
    hyprd.ok("start", "--snapshot", "ready", "saved")
    return first_answer(hyprd, port, start)


def wake(hyprd: Hyprd, port: int) -> float:
    wait_for(lambda: hyprd.inspect("idle")["state"] == "sleeping", timeout=120)
    start = time.perf_counter()
    if not answers(hyprd, port, wait=60):
        raise RuntimeError("the sleeping VM did not answer")
    return time.perf_counter() - start


def bench(runs: int) -> None:
    with throwaway_hyprd() as hyprd:
        cold(hyprd, 8300)  # warm-up: the accelerator probe, caches
        hyprd.ok("run", "-d", "--name", "saved", "-p", "8301:80", "busybox", "sh", "-c", SERVER)
        wait_for(lambda: answers(hyprd, 8301))
        hyprd.ok("snapshot", "create", "saved", "ready")
        hyprd.ok("run", "-d", "--name", "idle", "-p", "8302:80", "--idle-timeout", "2s",
                 "busybox", "sh", "-c", SERVER)  # fmt: skip
        wait_for(lambda: answers(hyprd, 8302))
        times: dict[str, list[float]] = {"cold": [], "restore": [], "wake": []}
        for _ in range(runs):
            times["cold"].append(cold(hyprd, 8300))
            times["restore"].append(restore(hyprd, 8301))
            times["wake"].append(wake(hyprd, 8302))
        median = {name: statistics.median(values) for name, values in times.items()}
        for name, values in times.items():
            shown = " ".join(f"{v * 1000:.0f}" for v in values)
            print(f"{name:<8} p50 {median[name] * 1000:7.0f} ms   runs {shown}")
        ratio = median["cold"] / median["restore"]
        print(f"restore to answering: {ratio:.1f}x faster than a cold run (goal >= 5x)")
        print(f"first request to a sleeping VM: {median['wake'] * 1000:.0f} ms, "
              f"{median['cold'] / median['wake']:.1f}x faster than a cold run")  # fmt: skip
        size = subprocess.run(["du", "-sh", str(hyprd.data_dir / "snapshots" / "ready")],
                              capture_output=True, text=True).stdout.split()[0]  # fmt: skip
        print(f"snapshot of a 256 MiB busybox VM on disk: {size}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    bench(parser.parse_args().runs)


if __name__ == "__main__":
    main()
