"""The daemon's build service: a context tar and options in, a tagged image out.

It unpacks the context into a directory of its own, parses the Dockerfile, runs the
Builder with the image store, the cache and build VMs, and writes the image's rows in one
transaction at the end, so a failed or cancelled build tags nothing; its work directory
and build VMs go with it. Two builds of the same context and options at once run one
after the other: the second finds every step in the cache. The build proxy (41010) runs
for as long as hyprd does.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypr.build.access import BaseImage, Emit
from hypr.build.builder import Builder, BuildOptions
from hypr.build.cache import BuildCache
from hypr.build.context import unpack_context
from hypr.build.dockerfile import (
    parse,
)
from hypr.build.dockerignore import IgnoreRules
from hypr.build.proxy import BuildProxy
from hypr.build.vm import BuildMachine
from hypr.config import Settings
from hypr.daemon.accel import AccelProbe
from hypr.daemon.images import ImageService
from hypr.errors import InternalError, InvalidArgument, NotFound
from hypr.images import layers as layer_files
from hypr.images import oci
from hypr.images.config import ImageConfig
from hypr.images.reference import parse_reference
from hypr.images.store import Image
from hypr.state.images import ImageRow, LayerRow
from hypr.vmm.adapter import VmmAdapter

log = logging.getLogger(__name__)
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@dataclass(frozen=True)
class BuildRequest:
    dockerfile: str = "Dockerfile"  # its path inside the context
    tags: list[str] = field(default_factory=list)
    options: BuildOptions = field(default_factory=BuildOptions)


class BuildService:
    """On the Daemon as `daemon.builds`."""

    def __init__(
        self,
        settings: Settings,
        images: ImageService,
        accel: AccelProbe,
        adapter: VmmAdapter,
        run_root: Path,
    ) -> None:
        self.images = images
        self.accel = accel
        self.adapter = adapter
        self.run_root = run_root
        self.work_root = settings.data_dir / "builds"
        self.cache = BuildCache(settings.build_cache_dir)
        host, _, port = settings.build_proxy_addr.rpartition(":")
        self.proxy = BuildProxy(host, int(port)) if settings.build_proxy_addr else None
        self._proxy_up = False
        self._locks: dict[str, asyncio.Lock] = {}
        self._running = 0

    async def start(self) -> None:
        """Clear what a killed hyprd left half done, and open the build proxy."""
        shutil.rmtree(self.work_root, ignore_errors=True)
        self.work_root.mkdir(mode=0o700, parents=True)
        if self.proxy is not None:
            try:
                await self.proxy.start()
                self._proxy_up = True
            except OSError as exc:
                log.warning("build proxy: cannot listen on %s: %s (RUN steps without a "
                            "network get no HTTP access)", self.proxy.url, exc)  # fmt: skip

    async def close(self) -> None:
        if self.proxy is not None:
            await self.proxy.close()

    async def build(self, context: AsyncIterator[bytes], req: BuildRequest, emit: Emit) -> Image:
        tags = [str(parse_reference(t)) for t in req.tags]  # a bad tag: 400 before any work
        for tag in tags:
            if parse_reference(tag).digest:
                raise InvalidArgument(f"a build cannot be tagged with a digest: {tag}")
        work = Path(tempfile.mkdtemp(prefix="build-", dir=self.work_root))
        self._running += 1
        try:
            digest = await _receive(context, work / "context.tar")
            root = work / "context"
            root.mkdir()
            with (work / "context.tar").open("rb") as stream:
                await asyncio.to_thread(unpack_context, stream, root)
            (work / "context.tar").unlink()
            text = _read_dockerfile(root, req.dockerfile)
            _drop_ignored_build_files(root, req.dockerfile)
            dockerfile = parse(text, req.dockerfile, req.options.build_args)
            # The same context and options (whatever the tags): one build at a time.
            key = hashlib.sha256(f"{digest}\0{req.dockerfile}\0{req.options}".encode()).hexdigest()
            lock = self._locks.setdefault(key, asyncio.Lock())
            async with lock:
                builder = Builder(dockerfile, root, req.options, _StoreAccess(self.images),
                                  self.cache, await self._machine(), emit)  # fmt: skip
                result = await builder.build()
            if not lock.locked():
                self._locks.pop(key, None)
            return self._commit(result.config, result.layers, result.created, tags)
        finally:
            self._running -= 1
            shutil.rmtree(work, ignore_errors=True)

    def prune(self) -> tuple[int, int]:
        """`hypr builder prune`: forget the cache, delete the layers no image uses. Returns
        (cache entries, bytes reclaimed)."""
        if self._running:
            raise InvalidArgument("a build is running: prune the cache after it")
        entries = self.cache.clear()
        used = {d for image in self.images.all() for d in image.config.diff_ids}
        store = self.images.store
        reclaimed = 0
        for path in store.layers_dir.glob("*.squashfs"):
            diff_id = "sha256:" + path.stem
            if diff_id not in used and store.rows.layer(diff_id) is None:
                reclaimed += path.stat().st_size
                path.unlink(missing_ok=True)
        return entries, reclaimed

    async def _machine(self) -> BuildMachine:
        accel = await self.accel.wait()
        proxy = self.proxy if self._proxy_up else None
        return BuildMachine(
            adapter=self.adapter,
            kernel=self.accel.kernel,
            initrd=self.accel.initramfs,
            accel=accel,
            runtime_root=self.run_root,
            proxy_command=f"busybox nc {proxy.host} {proxy.port}" if proxy else None,
            proxy_url=proxy.url if proxy else None,
        )

    def _commit(
        self, config: bytes, layers: list[tuple[str, Path, int]], created: str, tags: list[str]
    ) -> Image:
        """The image's config blob and rows, written at once; then its tags."""
        image_id = "sha256:" + hashlib.sha256(config).hexdigest()
        self.images.content.put_bytes(
            oci.Descriptor("application/vnd.oci.image.config.v1+json", image_id, len(config)),
            config,
        )
        rows = self.images.store.rows
        made = [LayerRow(d, d, size, path.stat().st_size) for d, path, size in layers]
        row = ImageRow(
            id=image_id, config=config.decode(), manifest_media_type=OCI_MANIFEST,
            created=created, pulled="", size=sum(x.size for x in made),
            diff_ids=tuple(d for d, _, _ in layers), tags=(), digests=(),
        )  # fmt: skip
        rows.record(row, made, tags[0] if tags else None, None)
        for tag in tags[1:]:
            rows.tag(tag, image_id)
        return self.images.get(image_id)


class _StoreAccess:
    """The image store as the Builder sees it."""

    def __init__(self, images: ImageService) -> None:
        self.images = images
        self.store = images.store

    async def base(self, reference: str, pull: bool, emit: Emit) -> BaseImage:
        image = await self.images.ensure(reference, "always" if pull else "missing", None)
        if image.builtin:
            diff_id, path = await asyncio.to_thread(self._import_builtin, image)
            return BaseImage(image.id, _builtin_config(image.config, diff_id), [(diff_id, path)])
        row = self.store.rows.get(image.id)
        if row is None:
            raise NotFound(f"image {reference} not found")
        config: dict[str, Any] = json.loads(row.config)
        return BaseImage(image.id, config, list(zip(row.diff_ids, image.layers, strict=True)))

    async def add_layer(self, tar: Path, diff_id: str) -> Path:
        out = self.store.layer_file(diff_id)
        if not out.is_file():
            await asyncio.to_thread(layer_files.convert, tar, "tar", diff_id, out)
        return out

    def layer(self, diff_id: str) -> Path | None:
        path = self.store.layer_file(diff_id)
        return path if path.is_file() else None

    def _import_builtin(self, image: Image) -> tuple[str, Path]:
        """A built-in image's one squashfs, stored as a layer under its diff_id (the
        sha256 of its tar) so a built image refers to it like to any other layer."""
        marker = self.store.layers_dir / f"builtin-{image.short_id}.diffid"
        with contextlib.suppress(OSError):
            diff_id = marker.read_text().strip()
            if self.store.layer_file(diff_id).is_file():
                return diff_id, self.store.layer_file(diff_id)
        source = image.layers[0]
        digest = hashlib.sha256()
        with subprocess.Popen(
            ["sqfs2tar", str(source)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        ) as proc:
            assert proc.stdout is not None and proc.stderr is not None
            while chunk := proc.stdout.read(1 << 20):
                digest.update(chunk)
            error = proc.stderr.read().decode(errors="replace").strip()
        if proc.returncode != 0:
            raise InternalError(f"cannot read the built-in image {image.reference}: {error}")
        diff_id = "sha256:" + digest.hexdigest()
        target = self.store.layer_file(diff_id)
        partial = target.with_name(target.name + ".partial")
        shutil.copyfile(source, partial)
        partial.replace(target)
        marker.write_text(diff_id)
        return diff_id, target


def _builtin_config(config: ImageConfig, diff_id: str) -> dict[str, Any]:
    run = {k: v for k, v in config.to_docker().items() if v not in (None, "", [], {})}
    return {
        "architecture": config.architecture or "amd64",
        "os": "linux",
        "config": run,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "hypr's built-in image"}],
    }


async def _receive(context: AsyncIterator[bytes], path: Path) -> str:
    """Write the context tar as it arrives; its sha256."""
    digest = hashlib.sha256()
    size = 0
    with path.open("wb") as sink:
        async for chunk in context:
            digest.update(chunk)
            size += len(chunk)
            await asyncio.to_thread(sink.write, chunk)
    if size == 0:
        raise InvalidArgument("the build context is empty: send a tar of the context directory")
    return digest.hexdigest()


def _drop_ignored_build_files(root: Path, dockerfile: str) -> None:
    """The Dockerfile and .dockerignore travel in the context even when .dockerignore
    names them; then, as Docker's daemon does, `COPY .` does not see them."""
    ignore = root / ".dockerignore"
    if not ignore.is_file():
        return
    rules = IgnoreRules.from_text(ignore.read_text(errors="replace"))
    for name in (dockerfile, ".dockerignore"):
        if rules.ignored(name):
            (root / name).unlink(missing_ok=True)


def _read_dockerfile(root: Path, name: str) -> str:
    path = (root / name).resolve()
    if not path.is_relative_to(root.resolve()) or not path.is_file():
        raise InvalidArgument(f"cannot find Dockerfile: {name} (not in the build context)")
    return path.read_text(errors="replace")
