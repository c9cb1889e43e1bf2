"""Boot-time benchmark for the guest stack alone (no hyprd), under TCG.

    python bench/guest_boot.py [--assets DIR] [--runs 5] [--memory 256]

"ready": QEMU spawn until the agent answers HELLO with ready=1 (busybox image, `sleep`
workload, no NIC), split into QEMU's start (spawn until the vCPU thread runs), QEMU to
the guest kernel, and the guest's own steps from kestrel's boot line (see boot_split.py).
"bare": QEMU spawn until the agent, as PID 1 of the same kernel and initramfs with
`hypr.probe=1` (no devices, no modules), prints its marker.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from boot_split import bare_boot, p50, parse_boot_line, print_split, spans
from hypr.guest.assets import preferred_kernel
from hypr.guest.protocol import AgentClient
from hypr.guest.spec import GuestSpec, WorkloadSpec, kernel_args, spec_cpio
from hypr.sandbox import DEFAULT_ASSETS
from hypr.vmm.adapter import VmConfig
from hypr.vmm.qemu import QemuAdapter


async def time_ready(assets: Path, memory: int, workdir: Path, n: int) -> dict[str, float]:
    """One boot: wall-clock phases (ms) plus the guest's own spans."""
    run = workdir / f"vm{n}"
    workload = WorkloadSpec(argv=["sleep", "100000"])
    config = VmConfig(
        vm_id=f"bench{n}",
        vcpus=1,
        memory_mib=memory,
        kernel=preferred_kernel(assets),
        initrd=assets / "initramfs.cpio",
        initrd_append=spec_cpio(workload),
        cmdline=kernel_args(GuestSpec("bench", [], [], workload)),
        layers=[assets / "images" / "busybox" / "rootfs.squashfs"],
        nics=[],
        runtime_dir=run,
        console_log=run / "console.log",
    )
    adapter = QemuAdapter()
    started = time.monotonic()
    handle = await adapter.create(config)
    spawned = time.monotonic()
    async with asyncio.timeout(30):
        client = await AgentClient.connect(handle.agent_socket)
    async with asyncio.timeout(120):
        await client.wait_ready()
    ready = time.monotonic()
    result = await client.exec(["true"])
    first_exec = time.monotonic()
    assert result.exit_code == 0
    dmesg = (await client.exec(["dmesg"])).stdout.decode(errors="replace")
    await client.shutdown(1)
    await adapter.stop(handle, 10)
    marks = parse_boot_line(dmesg)
    total = (ready - started) * 1000
    return {
        "total": total,
        "qemu_start": (spawned - started) * 1000,
        # The guest's clock starts with its kernel: whatever came before is QEMU's.
        "qemu_to_kernel": total - marks["ready"],
        "first_exec": (first_exec - ready) * 1000,
        **spans(marks),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--assets", type=Path, default=Path(os.environ.get("HYPR_ASSETS_DIR", DEFAULT_ASSETS))
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--memory", type=int, default=256)
    args = parser.parse_args()
    ready: list[dict[str, float]] = []
    bare: list[float] = []
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="hypr-bench-") as tmp:
        for i in range(args.runs):  # interleaved, so that load from elsewhere hits both alike
            ready.append(await time_ready(args.assets, args.memory, Path(tmp), i))
            bare += [t * 1000 for t in bare_boot(args.assets, 1)]

    def col(key: str) -> float:
        return p50([r[key] for r in ready])

    print(f"guest: spawn to ready         p50 {col('total'):7.1f} ms")
    print(f"guest: QEMU start (to vCPU)   p50 {col('qemu_start'):7.1f} ms")
    print(f"guest: QEMU to guest kernel   p50 {col('qemu_to_kernel'):7.1f} ms")
    print_split("guest:", ready)
    print(f"guest: first exec after ready p50 {col('first_exec'):7.1f} ms")
    print(f"guest: bare boot to init      p50 {p50(bare):7.1f} ms")
    print(
        f"guest: ready - bare           p50 {col('total') - p50(bare):7.1f} ms  "
        f"ratio {col('total') / p50(bare):.2f}x"
    )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
