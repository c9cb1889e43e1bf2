"""The accelerator probe, run in the background so the API serves while it answers."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hypr.guest.assets import INITRAMFS, SHARES_INITRAMFS, preferred_kernel
from hypr.guest.spec import PROBE_ARGS, PROBE_MARKER
from hypr.vmm.adapter import Accel
from hypr.vmm.qemu import BootProbe, resolve_accel
from hypr.vmm.tsc import host_tsc_khz


class AccelProbe:
    """Probes for KVM (and measures the host TSC rate that TCG guests need) once; the first
    boot waits for the answer."""

    def __init__(self, setting: str, assets_dir: Path) -> None:
        self.setting = setting
        self.assets_dir = assets_dir
        self._task: asyncio.Task[Accel] | None = None

    @property
    def kernel(self) -> Path:
        return preferred_kernel(self.assets_dir)

    @property
    def initramfs(self) -> Path:
        return self.assets_dir / INITRAMFS

    @property
    def shares_initramfs(self) -> Path:
        """Appended to the initramfs of VMs with shared folders (their extra modules)."""
        return self.assets_dir / SHARES_INITRAMFS

    def start(self) -> None:
        async def resolve() -> Accel:
            await asyncio.to_thread(host_tsc_khz)
            probe = BootProbe(self.kernel, self.initramfs, PROBE_ARGS, PROBE_MARKER)
            return await resolve_accel(self.setting, probe)

        self._task = asyncio.create_task(resolve())

    def answer(self) -> Accel | None:
        """The probe's answer, once it has one."""
        task = self._task
        if task is None or not task.done() or task.cancelled() or task.exception():
            return None
        return task.result()

    def describe(self) -> str:
        """The accelerator in use, or the setting while the probe still runs."""
        resolved = self.answer()
        if resolved is not None:
            return resolved
        return f"{self.setting} (probing)" if self.setting == "auto" else self.setting

    async def wait(self) -> Accel:
        if self._task is None:
            self.start()
        assert self._task is not None
        return await self._task

    def cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
