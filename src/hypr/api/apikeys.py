"""/apikeys: create, list and revoke the REST gateway's keys."""

from __future__ import annotations

from fastapi import APIRouter, Request

from hypr.api.deps import daemon_of
from hypr.api.models import ApiKeyCreate, ApiKeyCreated, ApiKeyView

router = APIRouter(prefix="/apikeys", tags=["apikeys"])


@router.post("", status_code=201)
async def create_key(body: ApiKeyCreate, request: Request) -> ApiKeyCreated:
    return ApiKeyCreated(name=body.name, key=daemon_of(request).api_keys.create(body.name))


@router.get("")
async def list_keys(request: Request) -> list[ApiKeyView]:
    return [
        ApiKeyView(name=k.name, prefix=k.prefix, created=k.created, last_used=k.last_used)
        for k in daemon_of(request).api_keys.all()
    ]


@router.delete("/{name}", status_code=204)
async def revoke_key(name: str, request: Request) -> None:
    daemon_of(request).api_keys.revoke(name)
