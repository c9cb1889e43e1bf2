"""How handlers reach the daemon object."""

from __future__ import annotations

from typing import cast

from fastapi import Request

from hypr.daemon.service import Daemon


def daemon_of(request: Request) -> Daemon:
    return cast(Daemon, request.app.state.daemon)
