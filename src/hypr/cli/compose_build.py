"""Compose's `build:` on the client side, as Docker Compose does it: each service's context
packed here and built by the daemon into the service's image (`image:`, else
`<project>-<service>`): `hypr compose build`, and `up`/`run` building what is missing (all
of it with `--build`)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from hypr.cli.build import build_image
from hypr.cli.pulling import local_image
from hypr.errors import InvalidArgument

if TYPE_CHECKING:
    from hypr.compose.project import Project, ServicePlan


def to_build(project: Project) -> list[ServicePlan]:
    """The services with `build:`, each image once (replicas share it)."""
    seen: set[str] = set()
    found = []
    for service in [*project.services, *filter(None, [project.oneoff])]:
        if service.build is not None and service.image not in seen:
            seen.add(service.image)
            found.append(service)
    return found


def build_services(
    project: Project,
    *,
    only_missing: bool,
    no_cache: bool = False,
    pull: bool = False,
    out: TextIO = sys.stdout,
) -> None:
    for service in to_build(project):
        if only_missing and local_image(service.image) is not None:
            continue
        build = service.build
        assert build is not None
        if "://" in build.context:
            raise InvalidArgument(
                f"services.{service.name}.build.context: only a local directory is supported"
            )
        context = Path(build.context)
        print(f"Building {service.name} ({service.image})", file=out, flush=True)
        args = {k: v if v is not None else os.environ.get(k) for k, v in build.args.items()}
        params = {
            "t": [service.image],
            "buildargs": json.dumps({k: v for k, v in args.items() if v is not None}),
            "labels": json.dumps(build.labels),
            "target": build.target or "",
            "nocache": no_cache,
            "pull": pull,
        }
        dockerfile = context / build.dockerfile if build.dockerfile else None
        build_image(context, dockerfile, params, out=out)
