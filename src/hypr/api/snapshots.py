"""Snapshots of running VMs (docs/serving.md): save, list, remove; a VM resumes from one
with `POST /vms/{ref}/start?snapshot=NAME`."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from hypr.api.deps import daemon_of
from hypr.daemon.snapshots import Snapshot

router = APIRouter(tags=["snapshots"])


class SnapshotRequest(BaseModel):
    name: str | None = None  # default: <vm>-<UTC time>


def snapshot_view(snapshot: Snapshot) -> dict[str, Any]:
    view = asdict(snapshot)
    del view["macs"]
    return view


@router.post("/vms/{ref}/snapshots", status_code=201)
async def create(ref: str, body: SnapshotRequest, request: Request) -> dict[str, Any]:
    return snapshot_view(await daemon_of(request).create_snapshot(ref, body.name))


@router.get("/snapshots")
async def list_snapshots(request: Request) -> list[dict[str, Any]]:
    return [snapshot_view(s) for s in daemon_of(request).snapshot_list()]


@router.delete("/snapshots/{name}")
async def remove(name: str, request: Request) -> dict[str, Any]:
    return snapshot_view(daemon_of(request).remove_snapshot(name))
