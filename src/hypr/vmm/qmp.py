"""A minimal QMP client (QEMU's JSON monitor on a Unix socket): what snapshots need, to
pause a VM, stream its state to a file with `migrate`, and resume it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path
from typing import Any

SOCKET = "qmp.sock"


class QmpError(RuntimeError):
    pass


class Qmp:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def connect(cls, path: Path) -> Qmp:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=1 << 20)
        qmp = cls(reader, writer)
        await qmp._read()  # the greeting
        await qmp.execute("qmp_capabilities")
        return qmp

    async def execute(self, command: str, **arguments: Any) -> Any:
        message: dict[str, Any] = {"execute": command}
        if arguments:
            message["arguments"] = arguments
        self._writer.write(json.dumps(message).encode() + b"\n")
        await self._writer.drain()
        while True:
            reply = await self._read()
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise QmpError(f"{command}: {reply['error'].get('desc', reply['error'])}")
            # events ({"event": ...}) are not what we wait for

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    async def _read(self) -> dict[str, Any]:
        line = await self._reader.readline()
        if not line:
            raise QmpError("QEMU closed its monitor")
        reply: dict[str, Any] = json.loads(line)
        return reply


async def save_state(path: Path, target: Path, resume: bool, poll: float = 0.05) -> int:
    """Pause the VM whose monitor is at `path`, write its whole state to `target` (QEMU's
    migration stream) and, with `resume`, let it run again; the state's size in bytes."""
    if any(c in str(target) for c in " ,'\"\\"):
        raise QmpError(f"a snapshot path cannot contain spaces, commas or quotes: {target}")
    qmp = await Qmp.connect(path)
    try:
        await qmp.execute("stop")
        await qmp.execute("migrate", uri=f"exec:cat > {target}")
        await _migrated(qmp, "saving the VM's state", poll)
        if resume:
            await qmp.execute("cont")
    except BaseException:
        if resume:
            with contextlib.suppress(QmpError, OSError):
                await qmp.execute("cont")
        raise
    finally:
        await qmp.close()
    return os.stat(target).st_size


async def resume_incoming(path: Path, poll: float = 0.05) -> None:
    """Once QEMU has read a saved state (`-incoming`), let the VM run: a state saved from a
    paused VM comes back paused. QEMU listens on `path` by the time it runs."""
    qmp = await Qmp.connect(path)
    try:
        await _migrated(qmp, "reading the saved state", poll)
        await qmp.execute("cont")
    finally:
        await qmp.close()


async def _migrated(qmp: Qmp, what: str, poll: float) -> None:
    """Wait for the migration (out to a file, or in from one) to complete."""
    while True:
        status = await qmp.execute("query-migrate")
        state = status.get("status")
        if state == "completed":
            return
        if state in ("failed", "cancelled"):
            raise QmpError(f"{what} failed: {status.get('error-desc', state)}")
        await asyncio.sleep(poll)
