"""A server process hyprd runs beside itself (dnsmasq per network, the proxy's HAProxy):
started, restarted with a backoff whenever it dies, left running when hyprd exits and
adopted by the next one; the directory that holds its configuration is its identity."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from hypr.process import terminate, wait_exit

log = logging.getLogger(__name__)
STOP_TIMEOUT = 2.0
MAX_BACKOFF = 5.0
STABLE_AFTER = 30.0  # a server that ran this long before dying is restarted without delay


class ServerError(Exception):
    """The server did not start; the message says why, in one line."""


class SupervisedServer:
    """What dnsmasq and HAProxy share; a subclass starts its process (`_spawn`, which sets
    `pid` or raises ServerError) and knows its own processes (`_is_ours`)."""

    def __init__(self, directory: Path, description: str) -> None:
        self.directory = directory
        self.description = description  # for log lines: "dnsmasq for network bridge"
        self.pid: int | None = None
        self._supervisor: asyncio.Task[None] | None = None

    @property
    def conf_path(self) -> Path:
        raise NotImplementedError

    @property
    def pid_path(self) -> Path:
        raise NotImplementedError

    async def _spawn(self) -> None:
        raise NotImplementedError

    def _is_ours(self, pid: int) -> bool:
        raise NotImplementedError

    async def stop(self) -> None:
        """Stop the server for good (what it served is gone)."""
        self._stop_supervising()
        for pid in {self.pid, self._pid_from_file()}:
            if pid is not None and self._is_ours(pid):
                await terminate(pid, STOP_TIMEOUT)
        self.pid = None

    def detach(self) -> None:
        """hyprd is exiting: stop watching, and leave the server running for the next one."""
        self._stop_supervising()

    def _supervise_from_now(self) -> None:
        self._supervisor = asyncio.create_task(self._supervise())

    def _stop_supervising(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            self._supervisor = None

    def _pid_from_file(self) -> int | None:
        """The pid in the pid file, if that process is still this server."""
        try:
            pid = int(self.pid_path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if self._is_ours(pid) else None

    async def _supervise(self) -> None:
        """Start the server again whenever it dies, backing off while it keeps dying."""
        backoff = 0.1
        started = time.monotonic()
        while True:
            if self.pid is not None:
                await wait_exit(self.pid)
            if time.monotonic() - started > STABLE_AFTER:
                backoff = 0.1
            log.warning("%s is not running; starting it in %.1fs", self.description, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)
            started = time.monotonic()
            try:
                await self._spawn()
            except ServerError as exc:
                self.pid = None
                log.error("%s", exc)
