"""The host's TSC rate, which a TCG guest's kernel must be told (`tsc_early_khz`).

Under TCG the guest's RDTSC returns the host's TSC, and the guest kernel cannot calibrate
it reliably under emulation; told a wrong rate, its clock runs fast or slow by the ratio
(a fixed 2 GHz on a 2.445 GHz host ran 22 % fast). Linux publishes no exact rate: its boot
line "tsc: Detected ... MHz" leaves the kernel log's ring buffer within minutes on a busy
host, and /proc/cpuinfo's "cpu MHz" is the current core clock on most hardware. So a child
process (`python -m hypr.vmm.tsc`) measures RDTSC against CLOCK_MONOTONIC, and no machine
code ever runs inside hyprd.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

MEASURE_TIMEOUT = 10.0

# rdtsc; shl rdx, 32; or rax, rdx; ret
_RDTSC_CODE = bytes([0x0F, 0x31, 0x48, 0xC1, 0xE2, 0x20, 0x48, 0x09, 0xD0, 0xC3])


@functools.cache
def host_tsc_khz() -> int | None:
    """The host's TSC rate in kHz (found once per process), or None if unknown."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return None
    return measured_khz() or _cpuinfo_khz()


def measured_khz() -> int | None:
    """Measure the rate in a child process (see `_measure_here`)."""
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "hypr.vmm.tsc"],
            capture_output=True,
            text=True,
            timeout=MEASURE_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = proc.stdout.strip()
    return int(out) if proc.returncode == 0 and out.isdigit() else None


def _cpuinfo_khz() -> int | None:
    """Last resort: "cpu MHz" is the current core clock on most hardware, not the TSC's."""
    try:
        match = re.search(r"^cpu MHz\s*:\s*([0-9.]+)", Path("/proc/cpuinfo").read_text(), re.M)
    except OSError:
        return None
    return int(float(match.group(1)) * 1000) if match else None


def _measure_rate(rdtsc: Callable[[], int]) -> int:
    def sample() -> tuple[int, int]:
        # Bracket the TSC read with clock reads so the call overhead cancels out.
        before = time.perf_counter_ns()
        tsc = rdtsc()
        return tsc, (before + time.perf_counter_ns()) // 2

    sample()  # the first foreign call is slow
    rates = []
    for _ in range(3):
        c0, t0 = sample()
        time.sleep(0.03)
        c1, t1 = sample()
        rates.append((c1 - c0) * 1_000_000 // (t1 - t0))
    return int(statistics.median(rates))


def _measure_here() -> int | None:
    """RDTSC from an executable page, against CLOCK_MONOTONIC. Only ever run in the child."""
    try:
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except OSError:  # W^X policy
        return None
    try:
        page.write(_RDTSC_CODE)
        cell = ctypes.c_char.from_buffer(page)
        try:
            return _measure_rate(ctypes.CFUNCTYPE(ctypes.c_uint64)(ctypes.addressof(cell)))
        finally:
            del cell  # release the buffer export so the page can be unmapped
    finally:
        page.close()


if __name__ == "__main__":
    khz = _measure_here() if platform.machine() in ("x86_64", "AMD64") else None
    if khz is None:
        sys.exit(1)
    print(khz)
