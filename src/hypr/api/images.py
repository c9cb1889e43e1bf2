"""/images: pull (NDJSON progress, Docker's pull JSON lines), list, inspect (Docker's JSON
shape), remove, tag, prune.

A pull's errors before its first progress line (a malformed reference, an unknown
repository, wrong credentials, a registry that is down, no image for this platform) are
answered as 4xx/5xx `{"message"}`; an error after it is the stream's last line,
`{"error": ..., "message": ...}`; after a pull that went well it is `{"aux": {"Reference":
<canonical>, "Id": <image id>}}` (what the CLI prints). A client that hangs up stops
listening; the pull itself goes on to the end in the daemon (its image appears whole, or
not at all).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from hypr.api.deps import daemon_of
from hypr.api.progress import progress_stream
from hypr.api.registry import registry_auth
from hypr.daemon.images import Progress
from hypr.images.reference import parse_reference
from hypr.images.store import Image
from hypr.units import unix_time

router = APIRouter(prefix="/images", tags=["images"])


class PullRequest(BaseModel):
    reference: str


class TagRequest(BaseModel):
    repo: str
    tag: str | None = None


def image_summary(image: Image) -> dict[str, Any]:
    """One image of GET /images (Docker's image summary; Created in Unix seconds)."""
    return {
        "Id": image.id,
        "RepoTags": image.repo_tags,
        "RepoDigests": image.repo_digests,
        "Created": unix_time(image.created),
        "Size": image.size,
        "Labels": image.config.labels,
        "Builtin": image.builtin,
    }


def image_inspect(image: Image) -> dict[str, Any]:
    """`docker image inspect`'s shape."""
    config = image.config
    return {
        "Id": image.id,
        "RepoTags": image.repo_tags,
        "RepoDigests": image.repo_digests,
        "Created": image.created,
        "Config": config.to_docker(),
        "Architecture": config.architecture,
        "Os": config.os,
        "RootFS": {"Type": "layers", "Layers": config.diff_ids},
        "Size": image.size,
    }


@router.post("/pull")
async def pull(
    body: PullRequest,
    request: Request,
    x_registry_auth: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    auth = registry_auth(x_registry_auth)
    canonical = str(parse_reference(body.reference))  # malformed: 400 before anything starts
    daemon = daemon_of(request)
    return await pull_stream(
        lambda progress: daemon.pull_image(body.reference, auth, progress), canonical
    )


async def pull_stream(
    pulling: Callable[[Progress], Awaitable[Image]], canonical: str
) -> StreamingResponse:
    """Run a pull (`pulling(progress)`) as a task of its own and answer with its progress
    lines; hypr's /images/pull and Docker's /images/create both answer with it."""
    return await progress_stream(
        pulling, lambda image: [{"aux": {"Reference": canonical, "Id": image.id}}]
    )


@router.get("")
async def list_images(request: Request) -> list[dict[str, Any]]:
    return [image_summary(image) for image in daemon_of(request).images_all()]


@router.post("/prune")
async def prune(request: Request, all: bool = False) -> dict[str, Any]:
    result = daemon_of(request).prune_images(all)
    return {"ImagesDeleted": result.deleted, "SpaceReclaimed": result.space_reclaimed}


@router.get("/{ref:path}/json")
async def inspect(ref: str, request: Request) -> dict[str, Any]:
    return image_inspect(daemon_of(request).image(ref))


@router.get("/{ref:path}/history")
async def history(ref: str, request: Request) -> list[dict[str, Any]]:
    return daemon_of(request).image_history(ref)


@router.post("/{ref:path}/tag", status_code=201)
async def tag(ref: str, body: TagRequest, request: Request) -> dict[str, Any]:
    return image_inspect(daemon_of(request).tag_image(ref, body.repo, body.tag))


@router.delete("/{ref:path}")
async def remove(ref: str, request: Request, force: bool = False) -> list[dict[str, str]]:
    return daemon_of(request).remove_image(ref, force)
