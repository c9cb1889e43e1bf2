"""hyprd, the entry point that puts the API on the daemon: start-up, serving, and graceful
shutdown on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn
from prometheus_client import make_asgi_app
from starlette.types import ASGIApp

from hypr import __version__
from hypr.api.app import create_app
from hypr.api.auth import BearerAuth
from hypr.api.docker.app import create_docker_app
from hypr.api.docker.http import DockerServer
from hypr.config import Settings
from hypr.daemon import metrics
from hypr.daemon.logs import configure_logging
from hypr.daemon.service import Daemon
from hypr.errors import HyprError

log = logging.getLogger("hypr.daemon")


class StartupError(Exception):
    """hyprd cannot start; the message says why in one line."""


def _claim_pid_file(path: Path) -> None:
    """Refuse to start twice on one run directory; take over a stale PID file."""
    if path.exists():
        try:
            pid = int(path.read_text().strip())
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError):
            pass
        except PermissionError as exc:
            raise StartupError(f"hyprd is already running (pid file {path})") from exc
        else:
            if pid != os.getpid():
                raise StartupError(f"hyprd is already running with pid {pid} ({path})")
    path.write_text(f"{os.getpid()}\n")


class _Server(uvicorn.Server):
    """hyprd runs several listeners; it handles SIGTERM itself and stops them all."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()  # uvicorn only has a flag (`started`) to poll

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        except SystemExit:  # uvicorn exits the process when it cannot bind; hyprd reports it
            self.should_exit = True
            return
        if self.started:
            self.listening.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _listener(app: ASGIApp, **where: Any) -> _Server:
    return _Server(
        uvicorn.Config(app, log_config=None, access_log=False, timeout_graceful_shutdown=5, **where)
    )


def _host_port(text: str) -> dict[str, Any]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise StartupError(f"invalid listen address {text!r}: expected HOST:PORT")
    return {"host": host, "port": int(port)}


def _raise_open_files_limit() -> None:
    """Each published port holds a socket while its VM runs: take the whole hard limit of
    open files, not the 1024 a shell's soft limit would leave (as dockerd does)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _make_run_dir(path: Path) -> None:
    """The run directory holds VM runtime files (0700 each, by the umask) and the API
    socket: 0711 lets a user reach the socket, whose own 0660 decides who may use it, but
    not list or read anything else."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o711)


async def serve(settings: Settings) -> None:
    _make_run_dir(settings.run_dir)
    _claim_pid_file(settings.pid_file)
    daemon = Daemon(settings)
    docker_app = create_docker_app(daemon)
    docker = DockerServer(docker_app)
    docker_tcp = DockerServer(BearerAuth(docker_app, daemon.api_keys))
    try:
        await daemon.start()
        settings.socket_path.unlink(missing_ok=True)
        await docker.listen_unix(settings.docker_socket_path)
        if settings.docker_addr:
            await docker_tcp.listen_tcp(**_host_port(settings.docker_addr))
        app = create_app(daemon)
        servers = [_listener(app, uds=str(settings.socket_path))]
        if settings.api_addr:
            servers.append(
                _listener(BearerAuth(app, daemon.api_keys), **_host_port(settings.api_addr))
            )
        if settings.metrics_addr:
            servers.append(
                _listener(
                    make_asgi_app(metrics.install(daemon)), **_host_port(settings.metrics_addr)
                )
            )

        def stop_all() -> None:
            for server in servers:
                server.should_exit = True

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop_all)
        tasks = [asyncio.create_task(server.serve()) for server in servers]
        listening = asyncio.gather(*(s.listening.wait() for s in servers))
        waits: list[asyncio.Future[Any]] = [listening, *tasks]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        listening.cancel()  # a listener failed to start: stop waiting for the others
        with contextlib.suppress(asyncio.CancelledError):
            await listening
        if all(s.started for s in servers):
            os.chmod(settings.socket_path, 0o660)
            os.chmod(settings.docker_socket_path, 0o660)
            log.info(
                "hyprd %s listening on %s (Docker API on %s)%s%s",
                __version__,
                settings.socket_path,
                settings.docker_socket_path,
                f", REST gateway on {settings.api_addr}" if settings.api_addr else "",
                f", metrics on {settings.metrics_addr}" if settings.metrics_addr else "",
            )
        else:
            stop_all()
        await asyncio.gather(*tasks)
        if not all(s.started for s in servers):
            raise StartupError("a listener could not start (see the log above)")
    finally:
        await docker_tcp.stop()
        await docker.stop()
        await daemon.close()
        settings.socket_path.unlink(missing_ok=True)
        settings.pid_file.unlink(missing_ok=True)
        log.info("hyprd stopped")


def main() -> None:
    try:
        settings = Settings.from_env()
        configure_logging(settings.log_level)
        if os.geteuid() != 0:
            raise StartupError("hyprd must run as root (it manages bridges, TAPs and nftables)")
        # VM env values (secrets), console output and the database are root's alone: every
        # file hyprd, QEMU and dnsmasq create is 0600 and every directory 0700.
        os.umask(0o077)
        _raise_open_files_limit()
        asyncio.run(serve(settings))
    except (StartupError, HyprError, ValueError, OSError) as exc:
        print(f"hyprd: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
