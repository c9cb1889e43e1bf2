"""Waiting on processes that hyprd did not necessarily start (adopted QEMU, dnsmasq,
HAProxy), and stopping them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path


async def wait_exit(pid: int) -> None:
    """Return once `pid` has exited. A pidfd works for any process, not only our children
    (a child that exited counts even before it is reaped)."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(pidfd, readable)
    try:
        await exited
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)


async def terminate(pid: int, grace: float) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; return once `pid` is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    try:
        async with asyncio.timeout(grace):
            await wait_exit(pid)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        await wait_exit(pid)


def command_lines() -> Iterator[tuple[int, list[bytes]]]:
    """(pid, argv) of every process that can be read: how hyprd finds the QEMUs and file
    servers it started, whatever its database says."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        yield int(entry.name), argv
