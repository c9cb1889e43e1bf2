"""The REST application: routers plus error mapping; the daemon object is injected."""

from __future__ import annotations

from fastapi import FastAPI

from hypr import __version__
from hypr.api import (
    apikeys,
    builds,
    dns,
    images,
    machines,
    networks,
    registry,
    snapshots,
    stacks,
    system,
    vms,
    volumes,
)
from hypr.api.errors import install_error_handlers
from hypr.daemon.service import Daemon


def create_app(daemon: Daemon) -> FastAPI:
    app = FastAPI(title="hypr", version=__version__)
    app.state.daemon = daemon
    install_error_handlers(app)
    app.include_router(system.router)
    app.include_router(networks.router)
    app.include_router(vms.router)
    app.include_router(machines.router)
    app.include_router(stacks.router)
    app.include_router(dns.router)
    app.include_router(apikeys.router)
    app.include_router(registry.router)
    app.include_router(images.router)
    app.include_router(volumes.router)
    app.include_router(builds.router)
    app.include_router(snapshots.router)
    return app
