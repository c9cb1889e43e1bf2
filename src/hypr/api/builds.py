"""`POST /build` and `POST /build/prune`, in Docker's shapes, on hypr's API and on the Docker
face alike: the body is the context as a tar (what `docker build` and `hypr build` send),
the options are Docker's query parameters (`t` repeated, `dockerfile`, `buildargs` and
`labels` as JSON, `target`, `nocache`, `pull`, `networkmode`, `q`), the answer is Docker's
JSON lines (`{"stream": ...}`, `{"aux": {"ID": ...}}`, then `Successfully built/tagged`).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from hypr.api.deps import daemon_of
from hypr.api.progress import Event, progress_stream
from hypr.build.builder import BuildOptions
from hypr.build.vm import BuildNetwork
from hypr.daemon.builds import BuildRequest
from hypr.errors import InvalidArgument
from hypr.images.store import Image

router = APIRouter(tags=["build"])
# Docker's CLI always sends networkmode=default (its bridge); hypr's default is a step with
# no network but the build proxy. `host` or `bridge` ask for a NIC with NAT.
_NETWORKS: dict[str, BuildNetwork] = {"": "none", "default": "none", "none": "none",
                                      "host": "default", "bridge": "default"}  # fmt: skip


@router.post("/build")
async def build(
    request: Request,
    t: list[str] = Query(default=[]),
    dockerfile: str = "Dockerfile",
    buildargs: str = "",
    labels: str = "",
    target: str = "",
    nocache: bool = False,
    pull: str = "",
    networkmode: str = "",
    q: bool = False,
) -> StreamingResponse:
    if networkmode not in _NETWORKS:
        raise InvalidArgument(f"networkmode {networkmode!r}: use none, default or host")
    options = BuildOptions(
        build_args=_string_map("buildargs", buildargs),
        target=target or None,
        no_cache=nocache,
        pull=pull not in ("", "0", "false"),
        network=_NETWORKS[networkmode],
        labels=_string_map("labels", labels),
    )
    req = BuildRequest(dockerfile=dockerfile or "Dockerfile", tags=t, options=options)
    daemon = daemon_of(request)

    async def run(emit: Any) -> Image:
        def text(line: str) -> None:
            if not q:
                emit({"stream": line})

        return await daemon.build_image(request.stream(), req, text)

    def finish(image: Image) -> list[Event]:
        short = image.id.removeprefix("sha256:")[:12]
        done: list[Event] = [{"aux": {"ID": image.id}}]
        if q:
            return [*done, {"stream": image.id + "\n"}]
        done.append({"stream": f"Successfully built {short}\n"})
        done += [{"stream": f"Successfully tagged {tag}\n"} for tag in image.repo_tags]
        return done

    return await progress_stream(run, finish)


@router.post("/build/prune")
async def prune(request: Request) -> dict[str, Any]:
    entries, reclaimed = daemon_of(request).prune_builder()
    return {"CachesDeleted": [str(entries)] if entries else [], "SpaceReclaimed": reclaimed}


def _string_map(name: str, text: str) -> dict[str, str]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise InvalidArgument(f"{name} must be a JSON object of strings") from None
    if not isinstance(value, dict):
        raise InvalidArgument(f"{name} must be a JSON object of strings")
    # A null value is Docker's "take it from the client's env", which the client did.
    return {str(k): str(v) for k, v in value.items() if v is not None}
