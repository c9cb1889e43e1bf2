"""Images: a squashfs root filesystem plus a manifest (entrypoint, cmd, env, ports).

The built-in `busybox` image is made at set-up into the assets directory, so the main job
needs nothing pulled.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from hypr.errors import NotFound


@dataclass(frozen=True)
class Image:
    name: str
    tag: str
    rootfs: Path
    entrypoint: list[str]
    cmd: list[str]
    env: list[str]
    workdir: str
    exposed_ports: list[str] = field(default_factory=list)

    @property
    def reference(self) -> str:
        return f"{self.name}:{self.tag}"

    @property
    def id(self) -> str:
        return hashlib.sha256(self.reference.encode() + str(self.rootfs).encode()).hexdigest()

    @property
    def size(self) -> int:
        return self.rootfs.stat().st_size


class ImageStore:
    """Finds images by Docker-style reference (`busybox`, `busybox:latest`)."""

    def __init__(self, *roots: Path) -> None:
        self.roots = roots

    def all(self) -> list[Image]:
        images = []
        for root in self.roots:
            for manifest in sorted(root.glob("*/manifest.json")):
                images.append(_load(manifest))
        return images

    def get(self, reference: str) -> Image:
        name, _, tag = reference.partition(":")
        tag = tag or "latest"
        name = name.removeprefix("docker.io/").removeprefix("library/")
        for image in self.all():
            if image.name == name and image.tag == tag:
                return image
        raise NotFound(
            f"image {reference} not found (available: "
            f"{', '.join(i.reference for i in self.all()) or 'none'})"
        )


def _load(manifest: Path) -> Image:
    data = json.loads(manifest.read_text())
    return Image(
        name=data["name"],
        tag=data.get("tag", "latest"),
        rootfs=manifest.parent / "rootfs.squashfs",
        entrypoint=list(data.get("entrypoint", [])),
        cmd=list(data.get("cmd", [])),
        env=list(data.get("env", [])),
        workdir=data.get("workdir", "/") or "/",
        exposed_ports=list(data.get("exposed_ports", [])),
    )
