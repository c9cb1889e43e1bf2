"""Boot-time benchmark for the guest stack under the current accelerator.

    python bench/guest_boot.py --assets build/assets [--runs 7] [--memory 128]

"ready": QEMU spawn until the agent answers HELLO with ready=1 (busybox image, `sleep`
workload, no NIC). "bare": QEMU spawn until QEMU exits after the agent, started as PID 1 of
the same kernel + initramfs with `hypr.probe=1`, printed its marker and powered off.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from hypr.guest.assets import preferred_kernel
from hypr.guest.protocol import AgentClient
from hypr.guest.spec import PROBE_ARGS, PROBE_MARKER, WorkloadSpec, spec_cpio
from hypr.vmm.adapter import VmConfig
from hypr.vmm.qemu import BootProbe, QemuAdapter, probe_boot


async def time_ready(assets: Path, kernel: Path, memory: int, workdir: Path, n: int) -> float:
    run = workdir / f"vm{n}"
    config = VmConfig(
        vm_id=f"bench{n}",
        vcpus=1,
        memory_mib=memory,
        kernel=kernel,
        initrd=assets / "initramfs.cpio",
        initrd_append=spec_cpio(WorkloadSpec(argv=["sleep", "100000"])),
        cmdline="hypr.hostname=bench",
        rootfs=assets / "images" / "busybox" / "rootfs.squashfs",
        nics=[],
        runtime_dir=run,
        console_log=run / "console.log",
    )
    adapter = QemuAdapter()
    started = time.monotonic()
    handle = await adapter.create(config)
    client = await AgentClient.connect(handle.agent_socket, timeout=30)
    await client.wait_ready(120)
    took = time.monotonic() - started
    await client.shutdown(1)
    await adapter.stop(handle, 10)
    return took


async def time_bare(assets: Path, kernel: Path) -> float:
    probe = BootProbe(kernel, assets / "initramfs.cpio", PROBE_ARGS, PROBE_MARKER)
    took, why = await probe_boot("tcg", probe, timeout=120)
    if took is None:
        raise RuntimeError(f"bare boot failed: {why}")
    return took


def summary(name: str, values: list[float]) -> str:
    ordered = " ".join(f"{v:.2f}" for v in sorted(values))
    return f"{name:28s} p50 {statistics.median(values):.2f}s  ({ordered})"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--assets", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--memory", type=int, default=128)
    args = parser.parse_args()
    kernels = [preferred_kernel(args.assets)]
    if kernels[0].name != "vmlinuz":
        kernels.append(args.assets / "vmlinuz")
    ready: dict[str, list[float]] = {k.name: [] for k in kernels}
    bare: dict[str, list[float]] = {k.name: [] for k in kernels}
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="hypr-bench-") as tmp:
        for i in range(args.runs):  # interleaved, so that load from elsewhere hits all alike
            for kernel in kernels:
                took = await time_ready(args.assets, kernel, args.memory, Path(tmp), i)
                ready[kernel.name].append(took)
                bare[kernel.name].append(await time_bare(args.assets, kernel))
    for kernel in kernels:
        print(summary(f"ready ({kernel.name})", ready[kernel.name]))
        print(summary(f"bare boot+poweroff ({kernel.name})", bare[kernel.name]))
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
