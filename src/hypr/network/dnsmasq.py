"""One supervised dnsmasq process, the way hyprd runs its DNS and DHCP servers.

dnsmasq runs as a daemon (not as hyprd's child) with a pid file, so it outlives hyprd like
the VMs do: DNS keeps answering while hyprd restarts, and the restarted hyprd adopts it. The
daemon's parent exits only once the server has bound its sockets, so a failed start comes
back at once with dnsmasq's own error line. A pidfd tells hyprd when the process dies, for
adopted processes as well as for those it started; it is then started again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import time
from pathlib import Path

from hypr.process import terminate, wait_exit

log = logging.getLogger(__name__)

CONF = "dnsmasq.conf"
PID_FILE = "dnsmasq.pid"
LOG_FILE = "dnsmasq.log"
STOP_TIMEOUT = 2.0
MAX_BACKOFF = 5.0
STABLE_AFTER = 30.0  # a server that ran this long before dying is restarted without delay


class DnsmasqError(Exception):
    """dnsmasq refused to start; the message is its own."""


class Dnsmasq:
    """A dnsmasq configured by `<directory>/dnsmasq.conf`; the directory is its identity."""

    def __init__(self, directory: Path, label: str) -> None:
        self.directory = directory
        self.label = label  # for log lines: "network bridge", "view bridge+other"
        self.pid: int | None = None
        self._supervisor: asyncio.Task[None] | None = None

    @property
    def conf_path(self) -> Path:
        return self.directory / CONF

    @property
    def pid_path(self) -> Path:
        return self.directory / PID_FILE

    @property
    def log_path(self) -> Path:
        return self.directory / LOG_FILE

    @property
    def running(self) -> bool:
        return self.pid is not None and _is_ours(self.pid, self.conf_path)

    @property
    def adoptable(self) -> bool:
        """A server with this directory runs (left by a previous hyprd, or started by us)."""
        return self._pid_from_file() is not None

    async def ensure(self, config: str) -> None:
        """Make exactly one dnsmasq with `config` run: adopt the one a previous hyprd left if
        its configuration is the same, otherwise (re)start it; then supervise it. A server
        that cannot start is logged and retried; DNS never blocks a network or a VM."""
        self._stop_supervising()
        pid = self._pid_from_file()
        if pid is not None and _read(self.conf_path) == config:
            log.debug("adopting dnsmasq of %s (pid %d)", self.label, pid)
            self.pid = pid
        else:
            if pid is not None:
                log.info("restarting dnsmasq of %s with a new configuration", self.label)
                await terminate(pid, STOP_TIMEOUT)
            self.directory.mkdir(parents=True, exist_ok=True)
            write_atomic(self.conf_path, config)
            try:
                await self._spawn()
            except DnsmasqError as exc:
                self.pid = None
                log.error("%s", exc)
        self._supervisor = asyncio.create_task(self._supervise())

    async def stop(self) -> None:
        """Stop the process for good (its network or view is gone)."""
        self._stop_supervising()
        for pid in {self.pid, self._pid_from_file()}:
            if pid is not None and _is_ours(pid, self.conf_path):
                await terminate(pid, STOP_TIMEOUT)
        self.pid = None

    def detach(self) -> None:
        """hyprd is exiting: stop watching, and leave the server running for the next one."""
        self._stop_supervising()

    def reload(self) -> None:
        """SIGHUP: dnsmasq re-reads its hosts and DHCP host directories from scratch (the
        only way to drop a DHCP reservation it has read) and clears its cache."""
        if self.pid is not None and self.running:
            os.kill(self.pid, signal.SIGHUP)

    # --- internals -----------------------------------------------------------------------

    def _stop_supervising(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            self._supervisor = None

    def _pid_from_file(self) -> int | None:
        """The pid in the pid file, if that process is still this server."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _is_ours(pid, self.conf_path) else None

    async def _spawn(self) -> None:
        binary = shutil.which("dnsmasq")
        if binary is None:
            raise DnsmasqError("dnsmasq is not installed (Debian package dnsmasq-base)")
        self.pid_path.unlink(missing_ok=True)
        proc = await asyncio.create_subprocess_exec(
            binary,
            f"--conf-file={self.conf_path}",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await proc.communicate()
        pid = self._pid_from_file()
        if proc.returncode != 0 or pid is None:
            message = stderr.decode(errors="replace").strip() or f"exit code {proc.returncode}"
            raise DnsmasqError(f"dnsmasq for {self.label} did not start: {message}")
        self.pid = pid
        log.info("started dnsmasq for %s (pid %d)", self.label, pid)

    async def _supervise(self) -> None:
        """Restart the server whenever it dies, backing off while it keeps dying at once."""
        backoff = 0.1
        started = time.monotonic()
        while True:
            if self.pid is not None:
                await wait_exit(self.pid)
            if time.monotonic() - started > STABLE_AFTER:
                backoff = 0.1
            log.warning("dnsmasq for %s is not running; starting it in %.1fs", self.label, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)
            started = time.monotonic()
            try:
                await self._spawn()
            except DnsmasqError as exc:
                self.pid = None
                log.error("%s", exc)


def _is_ours(pid: int, conf_path: Path) -> bool:
    """True if `pid` is a dnsmasq started with this configuration file (not a reused pid)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"--conf-file={conf_path}".encode() in argv


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def write_atomic(path: Path, text: str) -> None:
    """Write through a dot-file and a rename: dnsmasq's inotify skips dot-files and reads
    the file once, whole, when it appears under its name."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.rename(path)
