"""Volumes (issue 10), side by side in one run, in a namespace made for the run:

  * `io`: in one VM (1 GiB RAM), a sequential write then read of a 256 MiB file (busybox
    `dd`, 1 MiB blocks, fsync'd write, guest page cache dropped before the read) and a
    metadata job (create, stat and delete 5,000 small files with busy box's shell), on a
    volume (virtio-fs), on the VM's own overlay root (tmpfs upper layer), and on the host
    directly (the same commands with the host's busybox in the volume's directory).
    Goal: volume throughput at least 0.5x of the root's.
  * `boot`: `hypr run -d` with one volume to exec-ready, against the same without;
    alternating runs. Goal: under 100 ms extra.

Usage: .venv/bin/python bench/volume_bench.py [io|boot|all] [--runs N]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from hypr.sandbox import Hyprd, throwaway_hyprd

SIZE_MIB = 256
SMALL_FILES = 5000
BUSYBOX = shutil.which("busybox") or "/bin/busybox"
# Milliseconds around each phase, from /proc/uptime (centiseconds; busybox `date` has no %N
# and this busybox's dd prints no rate). Run by busybox sh in the guest and on the host alike.
NOW = """now() { read up _ < /proc/uptime; echo "${up%.*}${up#*.}"; }"""
BIG_JOB = f"""{NOW}
f="$1/big"
t0=$(now)
dd if=/dev/zero of="$f" bs=1M count={SIZE_MIB} conv=fsync 2>/dev/null
t1=$(now)
sync; echo 3 > /proc/sys/vm/drop_caches
t2=$(now)
dd if="$f" of=/dev/null bs=1M 2>/dev/null
t3=$(now)
rm -f "$f"
echo "$(( (t1-t0)*10 )) $(( (t3-t2)*10 ))"
"""
SMALL_JOB = f"""{NOW}
cd "$1" && mkdir small && cd small
t0=$(now)
i=0; while [ $i -lt {SMALL_FILES} ]; do echo x > f$i; i=$((i+1)); done
t1=$(now)
ls -l > /dev/null
t2=$(now)
cd .. && rm -rf small
t3=$(now)
echo "create $(( (t1-t0)*10 )) stat $(( (t2-t1)*10 )) delete $(( (t3-t2)*10 ))"
"""


Runner = Callable[[str, str], str]


def in_guest(hyprd: Hyprd, vm: str) -> Runner:
    def run(script: str, directory: str) -> str:
        result = hyprd.hypr("exec", vm, "--", "sh", "-c", script, "sh", directory)
        if result.returncode != 0:
            raise RuntimeError(result.stderr)
        return result.stdout

    return run


def on_host(script: str, directory: str) -> str:
    return subprocess.run(
        [BUSYBOX, "sh", "-c", script, "sh", directory], capture_output=True, text=True, check=True
    ).stdout


def io(run: Runner, directory: str, repeats: int) -> tuple[float, float, dict[str, int]]:
    """Medians of `repeats` runs: write MiB/s, read MiB/s, small-file phases in ms."""
    writes, reads, smalls = [], [], []
    for _ in range(repeats):
        write_ms, read_ms = (int(w) for w in run(BIG_JOB, directory).split())
        writes.append(SIZE_MIB * 1000 / max(write_ms, 10))
        reads.append(SIZE_MIB * 1000 / max(read_ms, 10))
        smalls.append(phases(run(SMALL_JOB, directory)))
    small = {k: int(statistics.median(s[k] for s in smalls)) for k in smalls[0]}
    return statistics.median(writes), statistics.median(reads), small


def phases(text: str) -> dict[str, int]:
    words = text.split()
    return {words[i]: int(words[i + 1]) for i in range(0, len(words), 2)}


def bench_io(repeats: int) -> None:
    with throwaway_hyprd() as hyprd:
        hyprd.ok("run", "-d", "--name", "io", "-m", "1g", "-v", "benchvol:/vol", "busybox",
                 "sleep", "1d")  # fmt: skip
        mountpoint = Path(hyprd.inspect("io")["mounts"][0]["host_path"])
        guest = in_guest(hyprd, "io")
        places = {"volume (virtio-fs)": (guest, "/vol"), "guest root (overlay)": (guest, "/tmp")}
        places["host directly"] = (on_host, str(mountpoint))
        results = {name: io(run, where, repeats) for name, (run, where) in places.items()}
    print(f"sequential {SIZE_MIB} MiB (dd bs=1M), MiB/s; {SMALL_FILES} small files, ms;")
    print(f"medians of {repeats} runs")
    for name, (write, read, small) in results.items():
        phases_text = "  ".join(f"{k} {v:5d}" for k, v in small.items())
        print(f"  {name:22} write {write:7.1f}  read {read:7.1f}   {phases_text}")
    vol_w, vol_r, vol_small = results["volume (virtio-fs)"]
    root_w, root_r, root_small = results["guest root (overlay)"]
    ratio = min(vol_w / root_w, vol_r / root_r)
    verdict = "met" if ratio >= 0.5 else "MISSED"
    print(f"volume / root: write {vol_w / root_w:.2f}x  read {vol_r / root_r:.2f}x  "
          f"(goal >= 0.5x: {verdict})")  # fmt: skip
    small = "  ".join(f"{k} {vol_small[k] / max(root_small[k], 1):.1f}x" for k in vol_small)
    print(f"small files volume / root: {small}")


BOOT_MARKS = re.compile(r"kestrel: boot ms:(.*)")


def run_to_exec_ready(hyprd: Hyprd, *volume: str) -> tuple[float, float]:
    """Seconds to exec-ready, and the guest's own ms for its mounts (boot marks)."""
    start = time.perf_counter()
    vm = hyprd.ok("run", "-d", *volume, "busybox", "sleep", "3600").strip()
    while hyprd.hypr("exec", vm, "true").returncode != 0:
        pass  # run -d returns once the agent answers; this is its first exec
    took = time.perf_counter() - start
    dmesg = hyprd.ok("exec", vm, "dmesg")
    hyprd.ok("rm", "-f", vm)
    match = BOOT_MARKS.search(dmesg)
    marks = dict(word.split("=") for word in match.group(1).split()) if match else {}
    mounts = float(marks.get("volumes", 0)) - float(marks.get("net", 0)) if marks else 0.0
    return took, mounts


def bench_boot(runs: int) -> None:
    with throwaway_hyprd() as hyprd:
        hyprd.ok("volume", "create", "bootvol")
        run_to_exec_ready(hyprd)  # warm-up: the accelerator probe, caches
        plain: list[float] = []
        mounted: list[float] = []
        guest_ms: dict[str, list[float]] = {"plain": [], "mounted": []}
        for i in range(runs):
            pair = [("plain", plain, ()), ("mounted", mounted, ("-v", "bootvol:/data"))]
            for kind, times, args in pair if i % 2 == 0 else pair[::-1]:
                took, mounts = run_to_exec_ready(hyprd, *args)
                times.append(took)
                guest_ms[kind].append(mounts)
    p, m = statistics.median(plain), statistics.median(mounted)
    extra = (m - p) * 1000
    print(f"run -d to exec-ready, {runs} runs each (alternating)")
    print(f"  without a volume  p50 {p * 1000:7.0f} ms   runs {fmt(plain)}")
    print(f"  with one volume   p50 {m * 1000:7.0f} ms   runs {fmt(mounted)}")
    g_plain, g_mounted = (statistics.median(guest_ms[k]) for k in ("plain", "mounted"))
    print(f"  in the guest, the mount step: p50 {g_mounted:.0f} ms with the volume "
          f"(modules, virtio-fs mount, bind), {g_plain:.0f} ms without")  # fmt: skip
    verdict = "met" if extra < 100 else "MISSED"
    print(f"  extra for the volume {extra:.0f} ms, ratio {m / p:.2f}x (goal < 100 ms: {verdict})")


def fmt(times: list[float]) -> str:
    return " ".join(f"{t * 1000:.0f}" for t in times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", default="all", choices=["io", "boot", "all"])
    parser.add_argument("--runs", type=int, default=7, help="boot runs of each kind")
    parser.add_argument("--repeats", type=int, default=3, help="io runs in each place")
    args = parser.parse_args()
    if args.what in ("io", "all"):
        bench_io(args.repeats)
    if args.what in ("boot", "all"):
        bench_boot(args.runs)


if __name__ == "__main__":
    main()
