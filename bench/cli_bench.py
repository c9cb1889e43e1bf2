"""CLI start-up benchmark (issue 8), side by side in one run, against a real hyprd in a
namespace made for the run:

  * `python -c pass` with the same interpreter: the floor any Python CLI stands on;
  * `hypr version`, `hypr ps` (two VM rows, one running) and `hypr --help`, wall time from
    spawn to exit;
  * `docker --version` as an anchor, if the docker CLI is installed (no engine needed).
Goal: `hypr ps` and `hypr version` under 120 ms wall p50.

hypr's modules are byte-compiled first, as a package install does (the environment of a
development shell may set PYTHONDONTWRITEBYTECODE, which would make every run compile them).

Usage: .venv/bin/python bench/cli_bench.py [--runs N]
"""

from __future__ import annotations

import argparse
import compileall
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import hypr
from hypr.sandbox import BIN, Hyprd, create_netns, delete_netns

GOAL_MS = 120.0


def timed(argv: list[str], env: dict[str, str], runs: int) -> list[float]:
    """Wall milliseconds of `runs` runs, each one checked to succeed."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
        times.append((time.perf_counter() - start) * 1000)
    return times


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    compileall.compile_dir(Path(hypr.__file__).parent, quiet=1)
    ns = create_netns("hyprb")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            daemon = Hyprd(ns, Path(tmp))
            daemon.start()
            try:
                daemon.ok("run", "-d", "--name", "one", "busybox", "sleep", "3600")
                daemon.ok("run", "-d", "--name", "two", "busybox", "true")
                env = daemon.env
                hypr_bin = str(BIN / "hypr")
                cases: list[tuple[str, list[str]]] = [
                    ("python -c pass", [sys.executable, "-c", "pass"]),
                    ("hypr version", [hypr_bin, "version"]),
                    ("hypr ps -a", [hypr_bin, "ps", "-a"]),
                    ("hypr --help", [hypr_bin, "--help"]),
                ]
                docker = shutil.which("docker") or "/usr/local/bin/docker"
                if Path(docker).exists():
                    cases.append(("docker --version", [docker, "--version"]))
                # Interleaved rounds, so that load from elsewhere hits every case alike.
                results: dict[str, list[float]] = {name: [] for name, _ in cases}
                for _ in range(args.runs):
                    for name, argv in cases:
                        results[name] += timed(argv, env, 1)
            finally:
                daemon.stop()
    finally:
        delete_netns(ns)
    floor = statistics.median(results["python -c pass"])
    for name, times in results.items():
        p50 = statistics.median(times)
        line = f"{name:<18} p50 {p50:7.1f} ms  p90 {p(times, 0.9):7.1f} ms"
        line += f"  {p50 / floor:5.2f}x python -c pass"
        if name in ("hypr version", "hypr ps -a"):
            line += f"  (goal < {GOAL_MS:.0f} ms: {'met' if p50 < GOAL_MS else 'MISSED'})"
        print(line)


if __name__ == "__main__":
    main()
