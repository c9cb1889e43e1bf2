"""What the builder needs from the rest of hypr, as types it owns: the image store (FROM
images, layers by diff_id) and where progress goes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

Emit = Callable[[str], None]  # one line of progress text, with its newline


@dataclass(frozen=True)
class BaseImage:
    id: str
    config: dict[str, Any]  # the whole OCI image config
    layers: list[tuple[str, Path]]  # (diff_id, squashfs), bottom first


class ImageAccess(Protocol):
    """What the builder needs from the image store."""

    async def base(self, reference: str, pull: bool, emit: Emit) -> BaseImage: ...

    async def add_layer(self, tar: Path, diff_id: str) -> Path: ...

    def layer(self, diff_id: str) -> Path | None: ...
