"""The image part of the daemon's facade (pulls, the store, builds): a base of `Daemon`, so
that the facade stays one object for the API while its modules stay readable."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from hypr.daemon.builds import BuildRequest, BuildService
from hypr.daemon.images import ImageService, Progress, Prune, PullPolicy
from hypr.images.registry import RegistryAuth
from hypr.images.store import Image


class ImageFacade:
    image_service: ImageService
    builds: BuildService

    def images_all(self) -> list[Image]:
        return self.image_service.all()

    def image(self, ref: str) -> Image:
        return self.image_service.get(ref)

    async def pull_image(
        self, ref: str, auth: RegistryAuth | None, progress: Progress | None = None
    ) -> Image:
        return await self.image_service.pull(ref, auth, progress)

    async def ensure_image(
        self,
        ref: str,
        policy: PullPolicy,
        auth: RegistryAuth | None,
        progress: Progress | None = None,
    ) -> Image:
        return await self.image_service.ensure(ref, policy, auth, progress)

    def remove_image(self, ref: str, force: bool) -> list[dict[str, str]]:
        return self.image_service.remove(ref, force)

    def tag_image(self, source: str, repo: str, tag: str | None) -> Image:
        return self.image_service.tag(source, repo, tag)

    def prune_images(self, all: bool) -> Prune:
        return self.image_service.prune(all)

    def image_history(self, ref: str) -> list[dict[str, Any]]:
        return self.image_service.history(ref)

    async def build_image(
        self, context: AsyncIterator[bytes], req: BuildRequest, emit: Callable[[str], None]
    ) -> Image:
        return await self.builds.build(context, req, emit)

    def prune_builder(self) -> tuple[int, int]:
        return self.builds.prune()
