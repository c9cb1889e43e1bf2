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
from pathlib import Path

from hypr.network.supervised import STOP_TIMEOUT, ServerError, SupervisedServer
from hypr.process import terminate

log = logging.getLogger(__name__)

CONF = "dnsmasq.conf"
PID_FILE = "dnsmasq.pid"
LOG_FILE = "dnsmasq.log"


class DnsmasqError(ServerError):
    """dnsmasq refused to start; the message is its own."""


class Dnsmasq(SupervisedServer):
    """A dnsmasq configured by `<directory>/dnsmasq.conf`; the directory is its identity."""

    def __init__(self, directory: Path, label: str) -> None:
        super().__init__(directory, f"dnsmasq for {label}")
        self.label = label  # for log lines: "network bridge", "view bridge+other"

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
        return self.pid is not None and self._is_ours(self.pid)

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
        self._supervise_from_now()

    def reload(self) -> None:
        """SIGHUP: dnsmasq re-reads its hosts and DHCP host directories from scratch (the
        only way to drop a DHCP reservation it has read) and clears its cache."""
        if self.pid is not None and self.running:
            os.kill(self.pid, signal.SIGHUP)

    # --- internals -----------------------------------------------------------------------

    def _is_ours(self, pid: int) -> bool:
        """True if `pid` is a dnsmasq started with this configuration file (not a reused pid)."""
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return f"--conf-file={self.conf_path}".encode() in argv

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
