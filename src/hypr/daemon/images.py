"""The daemon's image service: pulls (one at a time per reference and credentials, with
every caller seeing the same progress), the policies `run` and compose pull by, and the
image commands (rmi, tag, prune) with Docker's rules about images VMs use.

A pull runs as its own task: a client that goes away stops listening, the pull goes on to
the end (a later `hypr pull` finds it done or joins it). Nothing half made is visible
either way: the puller writes an image's rows only once every layer is whole.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from hypr.config import Settings
from hypr.errors import Conflict, HyprError, InvalidArgument, NotFound
from hypr.images.content import ContentStore
from hypr.images.puller import Puller, PullEvent
from hypr.images.reference import Reference, parse_reference, parse_registry
from hypr.images.registry import RegistryClient
from hypr.images.registry_auth import RegistryAuth
from hypr.images.store import Image, ImageStore
from hypr.state.vms import VmRecord
from hypr.units import unix_time

log = logging.getLogger(__name__)

PullPolicy = Literal["missing", "always", "never"]
PULL_POLICIES: tuple[str, ...] = get_args(PullPolicy)

Progress = Callable[[PullEvent], None]


@dataclass
class _Flight:
    """One pull in progress: its task, what it has said so far (for late joiners) and who
    listens now."""

    events: list[PullEvent] = field(default_factory=list)
    listeners: list[Progress] = field(default_factory=list)
    task: asyncio.Task[Image] | None = None

    def emit(self, event: PullEvent) -> None:
        self.events.append(event)
        for listener in list(self.listeners):
            listener(event)


@dataclass(frozen=True)
class Prune:
    deleted: list[dict[str, str]]  # Docker's [{"Untagged": ...}, {"Deleted": ...}]
    space_reclaimed: int


class ImageService:
    """On the Daemon as `daemon.image_service`."""

    def __init__(
        self,
        settings: Settings,
        store: ImageStore,
        content: ContentStore,
        vms: Callable[[], Iterable[VmRecord]],
        retag_vm: Callable[[str, str], None],
    ) -> None:
        """`vms` lists the VMs (any state: an exited VM still uses its image, as a stopped
        container does); `retag_vm(vm_id, image_id)` makes a VM name its image by id once
        `rmi -f` took the tag it was run with."""
        self.store = store
        self.content = content
        self._vms = vms
        self._retag_vm = retag_vm
        insecure = self.insecure = settings.insecure_registries
        self.puller: Puller[RegistryAuth] = Puller(
            store, content, lambda auth: RegistryClient(auth, insecure)
        )
        self._flights: dict[tuple[str, RegistryAuth | None], _Flight] = {}

    # --- pulling -------------------------------------------------------------------------

    async def pull(
        self, reference: str, auth: RegistryAuth | None, progress: Progress | None = None
    ) -> Image:
        """Pull `reference` (or join the pull of it already under way) and return it."""
        ref = parse_reference(reference)
        key = (str(ref), auth)
        flight = self._flights.get(key)
        if flight is None:
            flight = _Flight()
            self._flights[key] = flight
            flight.task = asyncio.create_task(self._run(ref, auth, flight, key))
        for event in list(flight.events):
            if progress is not None:
                progress(event)
        if progress is not None:
            flight.listeners.append(progress)
        assert flight.task is not None
        try:
            return await asyncio.shield(flight.task)
        finally:
            if progress is not None:
                flight.listeners.remove(progress)

    async def _run(
        self,
        ref: Reference,
        auth: RegistryAuth | None,
        flight: _Flight,
        key: tuple[str, RegistryAuth | None],
    ) -> Image:
        try:
            return await self.puller.pull(ref, auth, flight.emit)
        except HyprError as exc:
            log.info("pull of %s failed: %s", ref.familiar, exc.message)
            raise
        finally:
            del self._flights[key]

    async def check_login(self, server: str, auth: RegistryAuth) -> None:
        """Prove a user's credentials on a registry (`hypr login`); they are not kept."""
        host = parse_registry(server)
        async with RegistryClient(auth, self.insecure) as client:
            await client.check_login(host)

    async def ensure(
        self,
        reference: str,
        policy: PullPolicy,
        auth: RegistryAuth | None,
        progress: Progress | None = None,
    ) -> Image:
        """The image `run` and compose start from: pulled first as `policy` says. The
        built-in images come from no registry, so `always` finds them as they are."""
        if policy not in PULL_POLICIES:
            raise InvalidArgument(f"pull policy must be missing, always or never, not {policy!r}")
        if policy != "always":
            try:
                return self.get(reference)
            except NotFound:
                if policy == "never":
                    raise NotFound(
                        f"image {reference} not found and the pull policy is never"
                    ) from None
        else:
            builtin = self._builtin(reference)
            if builtin is not None:
                return builtin
        return await self.pull(reference, auth, progress)

    async def close(self) -> None:
        """Stop the pulls still going (each cleans up after itself)."""
        tasks = [f.task for f in self._flights.values() if f.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- reading -------------------------------------------------------------------------

    def get(self, reference: str) -> Image:
        return self.store.get(reference)

    def all(self) -> list[Image]:
        return self.store.all()

    def history(self, reference: str) -> list[dict[str, Any]]:
        """`hypr image history`: the config's history, newest first, in Docker's shape;
        each entry that made a layer has that layer's size."""
        image = self.get(reference)
        if image.builtin:
            size = image.size
            return [{"Id": image.id, "Created": 0, "CreatedBy": "hypr's built-in image",
                     "Tags": image.repo_tags, "Size": size, "Comment": ""}]  # fmt: skip
        row = self.store.rows.get(image.id)
        assert row is not None
        history = json.loads(row.config).get("history") or []
        layers = list(row.diff_ids)
        entries = []
        for item in history:
            size = 0
            if not item.get("empty_layer") and layers:
                layer = self.store.rows.layer(layers.pop(0))
                size = layer.size if layer else 0
            entries.append({
                "Id": "<missing>", "Created": unix_time(str(item.get("created") or "")),
                "CreatedBy": str(item.get("created_by") or ""), "Tags": None, "Size": size,
                "Comment": str(item.get("comment") or ""),
            })  # fmt: skip
        entries.reverse()
        if entries:
            entries[0]["Id"], entries[0]["Tags"] = image.id, image.repo_tags
        return entries

    def users(self, image: Image) -> list[VmRecord]:
        """The VMs that run `image` (in any state)."""
        found = []
        for vm in self._vms():
            try:
                if self.store.get(vm.image).id == image.id:
                    found.append(vm)
            except HyprError:
                continue
        return found

    def _builtin(self, reference: str) -> Image | None:
        try:
            image = self.store.get(reference)
        except HyprError:
            return None
        return image if image.builtin else None

    # --- changing ------------------------------------------------------------------------

    def tag(self, source: str, repo: str, tag: str | None) -> Image:
        """`hypr tag SOURCE REPO[:TAG]`: one more name for a pulled image."""
        image = self.get(source)
        target = parse_reference(f"{repo}:{tag}" if tag else repo)
        if target.digest:
            raise InvalidArgument(f"cannot tag with a digest: {target.familiar}")
        if image.builtin:
            raise InvalidArgument(f"{image.reference} is built in and cannot be tagged")
        if self._builtin(str(target)) is not None:
            raise Conflict(f"{target.familiar} is the name of a built-in image")
        self.store.rows.tag(str(target), image.id)
        return self.get(image.id)

    def remove(self, reference: str, force: bool) -> list[dict[str, str]]:
        """`hypr rmi`: remove a name, and the image once nothing names or uses it. While a
        VM uses the image, refused; with `force` only the names go (the VM keeps running
        and names the image by id from then on)."""
        image = self.get(reference)
        if image.builtin:
            raise Conflict(f"{image.reference} is hypr's built-in image and cannot be removed")
        row = self.store.rows.get(image.id)
        assert row is not None
        names = self._names_meant(reference, row.tags, row.digests)
        users = self.users(image)
        if users and not force:
            vm = users[0]
            raise Conflict(
                f"image {reference} is in use by VM {vm.name} ({vm.id[:12]}): remove the VM "
                "first, or use -f to remove only the name"
            )
        if names is None and len(row.tags) > 1 and not force:
            raise Conflict(
                f"image {image.short_id} has several names ({', '.join(image.repo_tags)}): "
                "remove them one by one, or use -f"
            )
        dropping = list(names) if names is not None else [*row.tags, *row.digests]
        for name in dropping:
            self.store.rows.unname(name)
        left = self.store.rows.get(image.id)
        if left is not None and not left.tags and not users:
            dropping += left.digests  # the last tag gone: the image goes, as in Docker
            gone = self._delete(image)[0]
        else:
            gone = []
            for vm in users:
                if self._resolves_to(vm.image) != image.id:
                    self._retag_vm(vm.id, image.id)
        return [{"Untagged": parse_reference(n).familiar} for n in dropping] + gone

    def prune(self, all: bool) -> Prune:
        """Remove the dangling images (no tag) no VM uses; with `all` every unused one."""
        used = {img.id for vm in self._vms() if (img := self._try_get(vm.image))}
        deleted: list[dict[str, str]] = []
        reclaimed = 0
        for image in self.store.all():
            if image.builtin or image.id in used or (image.repo_tags and not all):
                continue
            untagged = [{"Untagged": name} for name in (*image.repo_tags, *image.repo_digests)]
            gone, size = self._delete(image)
            deleted += untagged + gone
            reclaimed += size
        return Prune(deleted, reclaimed)

    def _delete(self, image: Image) -> tuple[list[dict[str, str]], int]:
        """Drop an image's rows and the files only it used; what Docker lists as Deleted,
        and the bytes freed."""
        sizes = {p.name: p.stat().st_size for p in image.layers if p.is_file()}
        orphans = self.store.remove(image.id)
        self.content.remove(image.id)  # the config blob
        files = [self.store.layer_file(d).name for d in orphans]
        freed = sum(sizes.get(name, 0) for name in files)
        return [{"Deleted": image.id}, *({"Deleted": d} for d in orphans)], freed

    def _names_meant(
        self, reference: str, tags: tuple[str, ...], digests: tuple[str, ...]
    ) -> tuple[str, ...] | None:
        """The image's name `reference` spells (a tag or a repo digest), None for an id."""
        try:
            canonical = str(parse_reference(reference))
        except HyprError:
            return None
        return (canonical,) if canonical in (*tags, *digests) else None

    def _resolves_to(self, reference: str) -> str | None:
        image = self._try_get(reference)
        return image.id if image else None

    def _try_get(self, reference: str) -> Image | None:
        try:
            return self.store.get(reference)
        except HyprError:
            return None
