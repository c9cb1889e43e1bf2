"""Docker's `/images` on hypr's image store: pull (`/images/create`, Docker's JSON progress
lines, `X-Registry-Auth`), list with filters, inspect, remove, tag. The shapes and the pull
stream are hypr's own API's (api/images.py), with the fields Docker's clients also read;
the daemon's image service does the work. A missing image is 404 `No such image: x`.

Not here, and answered 404 as any route Docker has and hypr has not: build, import
(`fromSrc`), save, load, push, search, history.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import StreamingResponse

from hypr.api.deps import daemon_of
from hypr.api.docker.filters import Filters, boolean, match_labels, parse_filters
from hypr.api.docker.versions import at_least
from hypr.api.images import image_inspect, image_summary, pull_stream
from hypr.api.registry import registry_auth
from hypr.daemon.images import Progress
from hypr.errors import InvalidArgument, NotFound
from hypr.images.errors import Unauthorized
from hypr.images.reference import parse_reference
from hypr.images.store import Image

router = APIRouter(prefix="/images", tags=["docker images"])

LIST_FILTERS = ("dangling", "label", "reference")
PLATFORMS = ("", "linux", "linux/amd64")


@router.post("/create")
async def create(
    request: Request,
    fromImage: str = "",
    tag: str = "",
    platform: str = "",
    fromSrc: str = "",
    x_registry_auth: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """`docker pull`: the image's reference is `fromImage` with `tag` (a tag or a digest);
    without either, `latest` (Docker would pull every tag)."""
    if fromSrc:
        raise InvalidArgument("importing an image (fromSrc) is not supported: pull it instead")
    if not fromImage:
        raise InvalidArgument("fromImage is required")
    if platform.lower() not in PLATFORMS:
        raise InvalidArgument(f"platform {platform} is not supported: hypr runs linux/amd64")
    auth = registry_auth(x_registry_auth)
    reference = _with_tag(fromImage, tag)
    canonical = str(parse_reference(reference))  # malformed: 400 before anything starts
    daemon = daemon_of(request)

    async def pulling(progress: Progress) -> Image:
        try:
            return await daemon.ensure_image(reference, "always", auth, progress)
        except Unauthorized as exc:
            # Docker's answer: a 401 would make the CLI ask for a password on its terminal.
            raise NotFound(
                f"pull access denied for {fromImage}, repository does not exist or may "
                f"require 'docker login': {exc.message}"
            ) from None

    return await pull_stream(pulling, canonical)


@router.get("/json")
async def list_images(request: Request, filters: str | None = None) -> list[dict[str, Any]]:
    wanted = parse_filters(filters, LIST_FILTERS)
    legacy = not at_least(request, "1.44")
    return [
        _summary(image, legacy)
        for image in daemon_of(request).images_all()
        if _selected(image, wanted)
    ]


@router.get("/{name:path}/json")
async def inspect(name: str, request: Request) -> dict[str, Any]:
    with _no_such_image(name):
        image = daemon_of(request).image(name)
    view = image_inspect(image)
    extra: dict[str, Any] = {
        "Parent": "",
        "Comment": "",
        "Author": "",
        "DockerVersion": "",
        "GraphDriver": {"Name": "squashfs", "Data": {}},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
    }
    if not at_least(request, "1.44"):
        extra["VirtualSize"] = image.size
    return {**view, **extra}


@router.get("/{name:path}/history")
async def history(name: str, request: Request) -> list[dict[str, Any]]:
    with _no_such_image(name):
        return daemon_of(request).image_history(name)


@router.post("/{name:path}/tag", status_code=201)
async def tag(name: str, request: Request, repo: str = "", tag: str = "") -> Response:
    if not repo:
        raise InvalidArgument("repo is required")
    with _no_such_image(name):
        daemon_of(request).tag_image(name, repo, tag or None)
    return Response(status_code=201)


@router.delete("/{name:path}")
async def remove(name: str, request: Request, force: bool = False) -> list[dict[str, str]]:
    with _no_such_image(name):
        return daemon_of(request).remove_image(name, force)


@contextmanager
def _no_such_image(name: str) -> Iterator[None]:
    """The image `name` is missing: Docker's words for it (the tag's target, for tag)."""
    try:
        yield
    except NotFound:
        raise NotFound(f"No such image: {name}") from None


def _with_tag(image: str, tag: str) -> str:
    """`fromImage` and `tag` as one reference (`tag` may be a digest, as Docker allows)."""
    if not tag or "@" in image or ":" in image.rsplit("/", 1)[-1]:
        return image
    return f"{image}@{tag}" if ":" in tag else f"{image}:{tag}"


def _summary(image: Image, legacy: bool) -> dict[str, Any]:
    """Docker's image summary; `VirtualSize` went away at API 1.44."""
    summary = {
        **{k: v for k, v in image_summary(image).items() if k != "Builtin"},
        "ParentId": "",
        "SharedSize": -1,
        "Containers": -1,
    }
    if legacy:
        summary["VirtualSize"] = image.size
    return summary


def _selected(image: Image, wanted: Filters) -> bool:
    dangling = boolean(wanted, "dangling")
    if dangling is not None and dangling != (not image.repo_tags):
        return False
    if "label" in wanted and not match_labels(wanted["label"], image.config.labels):
        return False
    if "reference" in wanted:
        names = [*image.repo_tags, *(t.rsplit(":", 1)[0] for t in image.repo_tags)]
        return any(fnmatch.fnmatchcase(n, p) for p in wanted["reference"] for n in names)
    return True
