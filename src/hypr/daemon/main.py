"""hyprd: start-up, serving, and graceful shutdown on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

import uvicorn

from hypr import __version__
from hypr.api.app import create_app
from hypr.config import Settings
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


async def serve(settings: Settings) -> None:
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    _claim_pid_file(settings.pid_file)
    daemon = Daemon(settings)
    try:
        await daemon.start()
        settings.socket_path.unlink(missing_ok=True)
        config = uvicorn.Config(
            create_app(daemon),
            uds=str(settings.socket_path),
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=5,
        )
        server = uvicorn.Server(config)
        startup = asyncio.create_task(server.serve())
        while not server.started and not startup.done():
            await asyncio.sleep(0.01)
        if server.started:
            os.chmod(settings.socket_path, 0o660)
            log.info("hyprd %s listening on %s", __version__, settings.socket_path)
        await startup
    finally:
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
        asyncio.run(serve(settings))
    except (StartupError, HyprError, ValueError, OSError) as exc:
        print(f"hyprd: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
