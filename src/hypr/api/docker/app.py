"""The Docker face's ASGI app: routers, Docker's error shape, `/v1.NN/` prefixes."""

from __future__ import annotations

import re

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from hypr import __version__
from hypr.api import builds, registry
from hypr.api.docker import containers, events, images, logs, networks, system, volumes
from hypr.api.docker import exec as exec_api
from hypr.api.docker.versions import API_VERSION, VERSION_KEY
from hypr.api.errors import install_error_handlers
from hypr.daemon.service import Daemon

_PREFIX = re.compile(r"^/v(1\.\d+)(/.*)$")


class VersionPrefix:
    """Route `/v1.44/containers/json` as `/containers/json`, and keep the version the client
    asked for in the scope (some answers depend on it, as Docker's do)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            match = _PREFIX.match(scope["path"])
            version = API_VERSION
            if match:
                version = match.group(1)
                scope = {**scope, "path": match.group(2), "raw_path": match.group(2).encode()}
            scope = {**scope, VERSION_KEY: version}
        await self.app(scope, receive, send)


def create_docker_app(daemon: Daemon) -> ASGIApp:
    app = FastAPI(title="hypr (Docker Engine API)", version=__version__, openapi_url=None)
    app.state.daemon = daemon

    install_error_handlers(app)  # hypr's and Docker's error shape are the same

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        message = "page not found" if exc.status_code == 404 else str(exc.detail)
        return JSONResponse({"message": message}, status_code=exc.status_code)

    app.include_router(system.router)
    app.include_router(containers.router)
    app.include_router(networks.router)
    app.include_router(images.router)
    app.include_router(registry.router)  # /auth: `docker login` checks there
    app.include_router(volumes.router)
    app.include_router(builds.router)  # the same /build as hypr's API
    app.include_router(events.router)
    app.include_router(logs.router)
    app.include_router(exec_api.router)
    return VersionPrefix(app)
