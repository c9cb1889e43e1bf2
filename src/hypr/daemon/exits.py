"""Waiting for a VM's next exit or its removal (Docker's `wait?condition=next-exit|removed`).

A waiter may register before the VM has even started (`docker run -d` sends its wait before
`start`), so it cannot await the running hypervisor; it gets a future that the VM manager
resolves when the VM exits or is removed. A waiter that gives up (its client went away)
takes its future back, so nothing accumulates.
"""

from __future__ import annotations

import asyncio
from typing import Literal, NamedTuple

Event = Literal["exit", "removed"]


class Exit(NamedTuple):
    code: int | None  # None: the VM died without its workload's code (see `error`)
    error: str | None


class ExitWaits:
    """Futures of exits, by VM id and event."""

    def __init__(self) -> None:
        self._waiters: dict[tuple[str, Event], set[asyncio.Future[Exit]]] = {}

    async def wait(self, vm_id: str, event: Event) -> Exit:
        """The VM's next exit (or its removal, which also ends a wait for an exit)."""
        future: asyncio.Future[Exit] = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault((vm_id, event), set())
        waiters.add(future)
        try:
            return await future
        finally:
            waiters.discard(future)
            if not waiters:
                self._waiters.pop((vm_id, event), None)

    def exited(self, vm_id: str, exit: Exit) -> None:
        self._resolve((vm_id, "exit"), exit)

    def removed(self, vm_id: str, exit: Exit) -> None:
        self._resolve((vm_id, "exit"), exit)
        self._resolve((vm_id, "removed"), exit)

    def _resolve(self, key: tuple[str, Event], exit: Exit) -> None:
        for future in self._waiters.get(key, ()):
            if not future.done():
                future.set_result(exit)
