"""The subdomain proxy's HAProxy, supervised the way hyprd runs dnsmasq.

HAProxy runs as a daemon with a pid file, so it outlives hyprd: requests keep flowing to
running VMs while hyprd restarts, and the restarted hyprd adopts it. The starting command
exits once HAProxy has bound its port, so a failed start comes back at once with
HAProxy's own error line. A pidfd tells hyprd when it dies; it is then started again, with
the routes map file, which hyprd keeps equal to what it last told the runtime API.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

from hypr.network.dnsmasq import write_atomic
from hypr.network.proxy_config import REASONS, REASONS_MAP, ROUTES, haproxy_config
from hypr.network.supervised import STOP_TIMEOUT, ServerError, SupervisedServer
from hypr.process import terminate

log = logging.getLogger(__name__)

CONF = "haproxy.cfg"


class HAProxyError(ServerError):
    """HAProxy refused to start, or its runtime API a command; the message is its own."""


class HAProxy(SupervisedServer):
    """An HAProxy configured by `<directory>/haproxy.cfg`; the directory is its identity."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory, "the proxy's HAProxy")
        self.routes: dict[str, str] = {}  # what the running HAProxy's map holds

    @property
    def conf_path(self) -> Path:
        return self.directory / CONF

    @property
    def map_path(self) -> Path:
        return self.directory / ROUTES

    async def ensure(self, listen: str, routes: dict[str, str]) -> None:
        """Make one HAProxy listen on `listen` with `routes`: adopt the one a previous hyprd
        left (then fix its map entry by entry) if it listens there, else (re)start it. A
        proxy that cannot start is logged and retried; it never blocks hyprd."""
        self._stop_supervising()
        config = haproxy_config(self.directory, listen)
        pid = self._pid_from_file()
        if pid is not None and _read(self.conf_path) == config:
            log.debug("adopting the proxy's HAProxy (pid %d)", pid)
            self.pid = pid
            self.routes = await self._show_map()
            await self.update(routes)
        else:
            if pid is not None:
                log.info("restarting the proxy's HAProxy with a new configuration")
                await terminate(pid, STOP_TIMEOUT)
            self.directory.mkdir(parents=True, exist_ok=True)
            write_atomic(self.directory / REASONS, REASONS_MAP)
            write_atomic(self.conf_path, config)
            self._write_map(routes)
            try:
                await self._spawn()
            except HAProxyError as exc:
                log.error("%s", exc)
        self._supervise_from_now()

    async def update(self, routes: dict[str, str]) -> None:
        """Change the running map to `routes`, one entry at a time (no reload, so no
        connection is cut), and the file a restarted HAProxy reads."""
        self._write_map(routes)
        if self.pid is None:
            return
        commands = [f"del map {self.map_path} {host}" for host in self.routes if host not in routes]
        commands += [
            f"{'set' if host in self.routes else 'add'} map {self.map_path} {host} {value}"
            for host, value in routes.items()
            if self.routes.get(host) != value
        ]
        try:
            for command in commands:
                await self._command(command)
        except (OSError, HAProxyError) as exc:
            log.warning("the proxy's HAProxy did not take its new routes: %s", exc)
            return
        self.routes = dict(routes)

    # --- internals -----------------------------------------------------------------------

    def _write_map(self, routes: dict[str, str]) -> None:
        write_atomic(self.map_path, "".join(f"{h} {v}\n" for h, v in sorted(routes.items())))

    async def _command(self, command: str) -> str:
        """One runtime API command; its answer, or HAProxyError with the error it gave."""
        reader, writer = await asyncio.open_unix_connection(self.directory / "admin.sock")
        try:
            writer.write(command.encode() + b"\n")
            await writer.drain()
            answer = (await reader.read()).decode(errors="replace")
        finally:
            writer.close()
        if answer.strip() and not command.startswith("show "):
            raise HAProxyError(f"{command}: {answer.strip()}")
        return answer

    async def _show_map(self) -> dict[str, str]:
        """The adopted HAProxy's map: lines of `<ref id> <host> <value>`."""
        try:
            answer = await self._command(f"show map {self.map_path}")
        except OSError:
            return {}
        entries = (line.split(" ", 2) for line in answer.splitlines())
        return {fields[1]: fields[2] for fields in entries if len(fields) == 3}

    @property
    def pid_path(self) -> Path:
        return self.directory / "haproxy.pid"

    def _is_ours(self, pid: int) -> bool:
        """True if `pid` is an HAProxy started with this configuration (not a reused pid)."""
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return str(self.conf_path).encode() in argv and Path(argv[0].decode()).name == "haproxy"

    async def _spawn(self) -> None:
        binary = shutil.which("haproxy")
        if binary is None:
            raise HAProxyError("haproxy is not installed (Debian package haproxy)")
        proc = await asyncio.create_subprocess_exec(
            binary, "-f", str(self.conf_path),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, stderr = await proc.communicate()
        pid = self._pid_from_file()
        if proc.returncode != 0 or pid is None:
            lines = stderr.decode(errors="replace").strip().splitlines()
            alerts = [line for line in lines if "[ALERT]" in line] or lines[-1:]
            message = " ".join(alerts) or f"exit code {proc.returncode}"
            self.pid = None
            raise HAProxyError(f"the proxy's HAProxy did not start: {message}")
        self.pid = pid
        self.routes = _read_map(self.map_path)
        log.info("started HAProxy for the subdomain proxy (pid %d)", pid)


def _read_map(path: Path) -> dict[str, str]:
    lines = (_read(path) or "").splitlines()
    return dict(line.split(" ", 1) for line in lines if " " in line)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None
