"""The API versions the Docker face speaks, and the one a request asked for."""

from __future__ import annotations

from starlette.requests import Request

# What `/_ping` announces: the Docker CLI follows it (CLI 29 and later refuse below 1.44).
API_VERSION = "1.44"
# The oldest that docker-compose 1.29 and the Docker SDK use.
MIN_API_VERSION = "1.24"
VERSION_KEY = "hypr.docker_api_version"


def requested(request: Request) -> tuple[int, int]:
    """The version of the request's `/v1.NN/` prefix (API_VERSION without one)."""
    major, _, minor = str(request.scope.get(VERSION_KEY, API_VERSION)).partition(".")
    return int(major), int(minor)


def at_least(request: Request, version: str) -> bool:
    major, _, minor = version.partition(".")
    return requested(request) >= (int(major), int(minor))
