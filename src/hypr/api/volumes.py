"""/volumes: Docker's volume endpoints, bodies and shapes (Engine API), so that the Docker
API can serve them as they are: list (`{"Volumes", "Warnings"}`, `filters` JSON), create
(`POST /volumes` or Docker's `/volumes/create`), inspect, remove, prune.

A volume created with Docker Compose's project label belongs to that stack, as the
volumes docker compose itself creates do: it lives under `volumes/<project>/`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field

from hypr.api.deps import daemon_of
from hypr.api.docker.filters import parse_filters
from hypr.api.models import DockerModel
from hypr.compose.project import PROJECT_LABEL
from hypr.state.volumes import VolumeRecord

router = APIRouter(prefix="/volumes", tags=["volumes"])


class VolumeCreateRequest(DockerModel):
    Name: str | None = None  # none or "": an anonymous volume, named at random
    Driver: str = "local"
    DriverOpts: dict[str, str] | None = Field(default_factory=dict)
    Labels: dict[str, str] | None = Field(default_factory=dict)


def volume_view(vol: VolumeRecord) -> dict[str, Any]:
    """`docker volume inspect`'s shape."""
    return {
        "CreatedAt": vol.created,
        "Driver": vol.driver,
        "Labels": vol.labels,
        "Mountpoint": vol.mountpoint,
        "Name": vol.name,
        "Options": vol.options,
        "Scope": "local",
    }


@router.get("")
async def list_volumes(request: Request, filters: str | None = None) -> dict[str, Any]:
    volumes = daemon_of(request).volume_list(parse_filters(filters))
    return {"Volumes": [volume_view(vol) for vol in volumes], "Warnings": []}


@router.post("", status_code=201)
@router.post("/create", status_code=201)
async def create_volume(body: VolumeCreateRequest, request: Request) -> dict[str, Any]:
    labels = body.Labels or {}
    vol = daemon_of(request).create_volume(
        body.Name or None, body.Driver, labels, body.DriverOpts or {}, labels.get(PROJECT_LABEL)
    )
    return volume_view(vol)


@router.post("/prune")
async def prune_volumes(request: Request, all: bool = False) -> dict[str, Any]:
    removed, reclaimed = daemon_of(request).prune_volumes(all)
    return {"VolumesDeleted": removed, "SpaceReclaimed": reclaimed}


@router.get("/{name:path}")
async def inspect_volume(name: str, request: Request) -> dict[str, Any]:
    return volume_view(daemon_of(request).volume(name))


@router.delete("/{name:path}", status_code=204)
async def remove_volume(name: str, request: Request, force: bool = False) -> None:
    daemon_of(request).remove_volume(name, force)
