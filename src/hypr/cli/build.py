"""`hypr build` and `hypr builder prune`.

The context goes to the daemon as Docker's CLI sends it: a tar of the context directory
with `.dockerignore` applied here, the Dockerfile always in it. The daemon answers with
Docker's build lines, printed as they come.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import click

from hypr import units
from hypr.build.context import pack_context
from hypr.cli.client import ClientError
from hypr.cli.context import api
from hypr.errors import InvalidArgument


def parse_pairs(option: str, values: Iterable[str], from_env: bool) -> dict[str, str]:
    """`K=V` pairs; with `from_env`, a bare `K` takes its value from the environment (and
    is left out when unset), as `docker build --build-arg K` does."""
    pairs: dict[str, str] = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not key or any(c.isspace() for c in key):
            raise InvalidArgument(f"{option} {value!r}: expected KEY=VALUE")
        if sep:
            pairs[key] = val
        elif from_env and key in os.environ:
            pairs[key] = os.environ[key]
        elif not from_env:
            raise InvalidArgument(f"{option} {value!r}: expected KEY=VALUE")
    return pairs


def build_image(
    context: Path,
    dockerfile: Path | None,
    params: dict[str, Any],
    progress: str = "auto",
    out: Any = None,
) -> str:
    """Send `context` to the daemon, print its build lines (none with `quiet`); return the
    image id. A failed build raises ClientError with the daemon's message."""
    out = out or sys.stdout
    if not context.is_dir():
        raise InvalidArgument(f"the build context {context} is not a directory")
    dockerfile = dockerfile or context / "Dockerfile"
    with tempfile.TemporaryFile() as tar:
        params = {**params, "dockerfile": pack_context(context, dockerfile, tar)}
        size = tar.tell()
        tar.seek(0)
        headers = {"Content-Type": "application/x-tar", "Content-Length": str(size)}
        with api().stream("POST", "/build", params=params, content=tar, headers=headers,
                          timeout=None) as response:  # fmt: skip
            image_id = ""
            for line in response.iter_lines():
                if not line.strip():
                    continue
                event = json.loads(line)
                if "error" in event:
                    raise ClientError(event["error"])
                if "aux" in event:
                    image_id = event["aux"].get("ID", "")
                elif "stream" in event and progress != "quiet":
                    out.write(event["stream"])
                    out.flush()
    if not image_id:
        raise ClientError("the build ended without an image")
    return image_id


@click.command()
@click.option("--tag", "-t", "tags", multiple=True, help="Name and optionally tag, NAME[:TAG]")
@click.option("--file", "-f", "file", type=click.Path(path_type=Path), help="The Dockerfile")
@click.option("--build-arg", "build_args", multiple=True, help="A build-time variable, K=V")
@click.option("--target", help="The stage to build")
@click.option("--no-cache", is_flag=True, help="Do not use the cache")
@click.option("--pull", is_flag=True, help="Pull FROM images even if present")
@click.option("--network", type=click.Choice(["none", "default"]), default="none",
              help="RUN steps' network: none (only the build proxy) or default (NAT)")  # fmt: skip
@click.option("--progress", type=click.Choice(["auto", "plain", "quiet"]), default="auto")
@click.option("--quiet", "-q", is_flag=True, help="Print only the image ID")
@click.option("--label", "labels", multiple=True, help="A label of the image, K=V")
@click.argument("context", type=click.Path(path_type=Path))
def build(
    tags: Sequence[str],
    file: Path | None,
    build_args: Sequence[str],
    target: str | None,
    no_cache: bool,
    pull: bool,
    network: str,
    progress: str,
    quiet: bool,
    labels: Sequence[str],
    context: Path,
) -> None:
    """Build an image from a Dockerfile, in a build VM."""
    params: dict[str, Any] = {
        "t": list(tags),
        "buildargs": json.dumps(parse_pairs("--build-arg", build_args, from_env=True)),
        "labels": json.dumps(parse_pairs("--label", labels, from_env=False)),
        "target": target or "",
        "nocache": no_cache,
        "pull": pull,
        "networkmode": "host" if network == "default" else "none",
    }
    image_id = build_image(context, file, params, "quiet" if quiet else progress)
    if quiet:
        click.echo(image_id)


@click.group()
def builder() -> None:
    """Manage the build cache."""


@builder.command("prune")
@click.option("--force", "-f", is_flag=True, help="Do not ask")
def builder_prune(force: bool) -> None:
    """Empty the build cache (layers no image uses go too)."""
    if not force and not click.confirm("This removes the whole build cache. Continue?"):
        return
    result = api().post("/build/prune")
    click.echo(f"Total reclaimed space: {units.human_size(result['SpaceReclaimed'])}")
