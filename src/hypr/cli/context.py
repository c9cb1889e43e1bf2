"""One API client per CLI process."""

from __future__ import annotations

from functools import cache

from hypr.cli.client import ApiClient


@cache
def api() -> ApiClient:
    return ApiClient()
