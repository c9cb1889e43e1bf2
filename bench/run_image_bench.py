"""`hypr run` of a real image against the built-in one (issue 9), side by side in one run,
in a namespace made for the run with Debian's docker-registry holding the test Debian image
(bookworm essential + python3-minimal, 3 layers, ~57 MB), pulled before the clock starts:

  * `hypr run -d DEBIAN sleep 3600` to exec-ready (the first `hypr exec VM true` that
    succeeds): three squashfs layers stacked with overlayfs, a glibc userland;
  * the same for the built-in busybox image (one layer).
The ratio is what a real image's rootfs costs on boot. The runs alternate, so load from
elsewhere hits both alike; each VM is removed after its run (not timed).

Usage: .venv/bin/python bench/run_image_bench.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import time

from debian_registry import debian_registry, runs_text
from hypr.sandbox import Hyprd


def run_to_exec_ready(daemon: Hyprd, image: str) -> float:
    """Seconds from `hypr run -d` to the first exec that succeeds; the VM is removed after."""
    start = time.perf_counter()
    vm = daemon.ok("run", "-d", image, "sleep", "3600").strip()
    while daemon.hypr("exec", vm, "true").returncode != 0:
        pass  # run -d returns once the agent answers; this is its first exec
    took = time.perf_counter() - start
    daemon.ok("rm", "-f", vm)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each image")
    args = parser.parse_args()
    with debian_registry() as bench:
        daemon, ref = bench.daemon, bench.ref
        daemon.ok("pull", "-q", ref)
        run_to_exec_ready(daemon, "busybox")  # warm-up: the accelerator probe, caches
        debian: list[float] = []
        busybox: list[float] = []
        for i in range(args.runs):
            pair = [(debian, ref), (busybox, "busybox")]
            for times, image in pair if i % 2 == 0 else pair[::-1]:
                times.append(run_to_exec_ready(daemon, image))
    d, b = statistics.median(debian), statistics.median(busybox)
    print(f"run -d to exec-ready, {args.runs} runs each (alternating)")
    print(f"debian (pulled, 3 layers)   p50 {d:6.2f} s   runs {runs_text(debian)}")
    print(f"busybox (built in, 1 layer) p50 {b:6.2f} s   runs {runs_text(busybox)}")
    print(f"ratio debian / busybox      {d / b:.2f}x")


if __name__ == "__main__":
    main()
