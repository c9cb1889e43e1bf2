"""Where a VM's start goes: the boot-step times kestrel logs, and how to print a split.

kestrel writes one kernel-log line when it first answers HELLO (times since the guest kernel
started, CLOCK_MONOTONIC):

    kestrel: boot ms: init=812.3 mounts=815.0 modules=990.1 rootfs=1010.4 net=1020.9 ...

`guest_steps` reads it back through exec (`dmesg`), so it works for hyprd's VMs too.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import time
from pathlib import Path

from hypr.guest.assets import preferred_kernel
from hypr.guest.spec import PROBE_ARGS, PROBE_MARKER
from hypr.vmm.cmdline import kernel_cmdline
from hypr.vmm.tsc import host_tsc_khz

BOOT_LINE = re.compile(r"kestrel: boot ms:((?: [\w.]+=[0-9.]+)+)")
# The steps as kestrel names them, and what each span (from the previous mark) covers.
STEPS = (
    ("init", "kernel start to init (kernel boot, initramfs unpack)"),
    ("mounts", "early mounts (proc, sys, dev)"),
    ("modules", "module loading (virtio, squashfs, overlay) and device probe"),
    ("channel", "control channel opened"),
    ("rootfs", "image: squashfs + overlay + /dev mounts"),
    ("net", "/hypr/spec and NIC set-up"),
    ("workload", "/etc files and workload spawn"),
    ("ready", "HELLO answered: agent ready"),
)


def parse_boot_line(dmesg: str) -> dict[str, float]:
    """Step name -> ms since the guest kernel started, from kestrel's kernel-log line."""
    match = BOOT_LINE.search(dmesg)
    if match is None:
        raise RuntimeError("kestrel's boot line is not in the guest's kernel log")
    return {k: float(v) for k, v in (w.split("=") for w in match.group(1).split())}


def spans(marks: dict[str, float]) -> dict[str, float]:
    """Each step's own duration in ms, from the mark before it in time (`init` from kernel
    start); the channel may open early or late."""
    out, last = {}, 0.0
    for step, at in sorted(marks.items(), key=lambda item: item[1]):
        out[step] = at - last
        last = at
    return out


def p50(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def print_split(prefix: str, samples: list[dict[str, float]]) -> None:
    """One line per span: p50 over the runs, in ms."""
    for step, what in STEPS:
        values = [s[step] for s in samples if step in s]
        print(f"{prefix} guest {step:9s} p50 {p50(values):7.1f} ms  {what}")


def bare_boot(assets: Path, runs: int) -> list[float]:
    """QEMU with the same kernel, initramfs, memory and kernel arguments as hypr's VMs, but
    no devices, from spawn until the agent, started as init, prints its probe marker (s)."""
    argv = [
        "qemu-system-x86_64", "-M", "microvm,accel=tcg,pit=on,pic=on,rtc=on",
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-m", "256",
        "-kernel", str(preferred_kernel(assets)), "-initrd", str(assets / "initramfs.cpio"),
        "-append", kernel_cmdline("tcg", PROBE_ARGS, host_tsc_khz()), "-serial", "stdio",
    ]  # fmt: skip
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert proc.stdout is not None
        seen = b""
        while PROBE_MARKER not in seen:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                raise RuntimeError("bare QEMU exited without the probe marker")
            seen += chunk
        samples.append(time.perf_counter() - start)
        proc.kill()
        proc.wait()
    return samples
