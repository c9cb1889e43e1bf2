"""A VM's console log as its readers want it: the workload's bytes without the kernel's
lines, the last N lines, and followed while a condition holds (the VM runs, or the run an
attached client waits for goes on). hypr's `logs` and Docker's `logs` and `attach` all
read through here.

The console is a file that QEMU appends to (it outlives restarts, as Docker's log does);
following it polls, as `tail -f` does: the reader needs no help from the VM's supervisor.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import BinaryIO, Literal

from hypr.daemon.reconcile import ACTIVE_STATES
from hypr.daemon.vms import VmManager
from hypr.state.vms import VmRecord

KERNEL_LINE = re.compile(rb"^\[\s*\d+\.\d+\] ")
# The start of a line that more bytes may still turn into a kernel line.
_KERNEL_START = re.compile(rb"\[\s*(\d+(\.(\d+\]?)?)?)?")
POLL_SECONDS = 0.05
READ_SIZE = 65536


class ConsoleFilter:
    """Drops the kernel's printk lines (`[    1.234567] ...`) from the console's bytes and
    passes the workload's on as soon as they cannot begin a kernel line, so a prompt or a
    progress bar without a newline is not held back."""

    def __init__(self, kernel: bool = False) -> None:
        self.kernel = kernel  # keep the kernel's lines too
        self._held = b""  # a line start that may still become a kernel line
        self._line: Literal["start", "show", "skip"] = "start"

    def feed(self, data: bytes) -> bytes:
        if self.kernel:
            return data
        data, self._held = self._held + data, b""
        out = bytearray()
        pos = 0
        while pos < len(data):
            end = data.find(b"\n", pos)
            stop = len(data) if end < 0 else end + 1
            if self._line == "start":
                line = data[pos:stop]
                if end < 0 and _KERNEL_START.fullmatch(line):
                    self._held = line
                    break
                self._line = "skip" if KERNEL_LINE.match(line) else "show"
            if self._line == "show":
                out += data[pos:stop]
            if end >= 0:
                self._line = "start"
            pos = stop
        return bytes(out)

    def flush(self) -> bytes:
        """At the end of the stream: a held line start never became a kernel line."""
        held, self._held = self._held, b""
        return held


def last_lines(data: bytes, count: int) -> bytes:
    """The last `count` lines of `data`; an unfinished last line counts as one."""
    if count <= 0:
        return b""
    pos = len(data) - 1 if data.endswith(b"\n") else len(data)
    for _ in range(count):
        pos = data.rfind(b"\n", 0, pos)
        if pos < 0:
            return data
    return data[pos + 1 :]


async def read_console(
    path: Path,
    *,
    kernel: bool = False,
    tail: int | None = None,
    from_end: bool = False,
    follow: Callable[[], bool] | None = None,
) -> AsyncIterator[bytes]:
    """The console's bytes: the last `tail` lines of it (all without), or with `from_end`
    only what is written from now on; then, while `follow()` holds, what is written next.
    A log that does not exist yet is waited for while `follow()` holds."""
    start = _size(path) if from_end else 0
    handle = await _open_when_there(path, follow)
    if handle is None:
        return
    console = ConsoleFilter(kernel)
    with handle:
        handle.seek(start)
        if tail is not None:
            kept = b""
            while data := handle.read(READ_SIZE):
                kept = last_lines(kept + console.feed(data), tail)
            if kept:
                yield kept
        while True:
            # Asked before reading: what a VM wrote before it stopped is read after.
            going = follow is not None and follow()
            while data := handle.read(READ_SIZE):
                if shown := console.feed(data):
                    yield shown
            if not going:
                break
            await asyncio.sleep(POLL_SECONDS)
    if rest := console.flush():
        yield rest


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0  # not written yet: all of it is new


async def _open_when_there(path: Path, follow: Callable[[], bool] | None) -> BinaryIO | None:
    while True:
        try:
            return path.open("rb")
        except FileNotFoundError:
            if follow is None or not follow():
                return None
        await asyncio.sleep(POLL_SECONDS)


class RunWatch:
    """What an attached client follows: true until the VM's run that is under way, or the
    next one to begin, has ended (or the VM is gone). `docker run` attaches before it
    starts the container, and `docker start -a` to an exited one: both wait for the run."""

    def __init__(
        self,
        vm_id: str,
        is_running: Callable[[str], bool],
        record: Callable[[str], VmRecord | None],
    ) -> None:
        self._vm_id = vm_id
        self._is_running = is_running
        self._record = record
        vm = record(vm_id)
        self._started = vm.started_at if vm else None
        self._seen = is_running(vm_id)  # a run was seen under way

    def __call__(self) -> bool:
        if self._is_running(self._vm_id):
            self._seen = True
            return True
        vm = self._record(self._vm_id)
        if vm is None:
            return False
        if vm.state in ACTIVE_STATES:
            self._seen = True
            return True
        # A run that began and ended between two looks changed started_at.
        return not self._seen and vm.started_at == self._started


class Consoles:
    """The console logs of the manager's VMs, by reference. An unknown VM fails when its
    reader is made, before a response starts."""

    def __init__(self, vms: VmManager) -> None:
        self.vms = vms

    def logs(
        self, ref: str, *, kernel: bool = False, tail: int | None = None, follow: bool = False
    ) -> AsyncIterator[bytes]:
        """`hypr logs` and `docker logs`: followed while the VM runs."""
        vm_id = self.vms.get(ref).id
        running = (lambda: self._running(vm_id)) if follow else None
        return read_console(self.vms.log_path(vm_id), kernel=kernel, tail=tail, follow=running)

    def attach(self, ref: str, *, logs: bool, stream: bool) -> AsyncIterator[bytes]:
        """What `docker attach` and an attached `docker run` see: the console from now on
        (all of it with `logs`), with `stream` until the run under way, or the next one
        (`docker run` attaches before it starts the container), has ended."""
        vm_id = self.vms.get(ref).id
        watch = RunWatch(vm_id, self._running, self.vms.rows.get) if stream else None
        return read_console(self.vms.log_path(vm_id), from_end=not logs, follow=watch)

    def _running(self, vm_id: str) -> bool:
        return vm_id in self.vms.running
