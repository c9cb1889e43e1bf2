"""Docker's `/volumes`: hypr's own volumes API already answers in Docker's shapes and is
served as it is (api/volumes.py); only prune differs, since Docker says `all` in its
`filters` where hypr's API takes a query parameter."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from hypr.api import volumes
from hypr.api.docker.filters import boolean, parse_filters

router = APIRouter(tags=["docker volumes"])


@router.post("/volumes/prune")
async def prune_volumes(request: Request, filters: str | None = None) -> dict[str, Any]:
    """Anonymous volumes no VM uses; every unused one with `all=true` (API 1.42 and up)."""
    wanted = parse_filters(filters, ("all",))
    return await volumes.prune_volumes(request, all=bool(boolean(wanted, "all")))


router.include_router(volumes.router)
