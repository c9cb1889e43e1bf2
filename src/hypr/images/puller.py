"""Pulling an image: resolve it, download the layers the store lacks (a few at once), make
each a squashfs as soon as it is in, then record the image in one transaction.

No half image is ever visible: blobs become files only once verified, squashfs files only
once whole, and the rows that make an image appear are written last, all at once. A pull
killed half-way leaves verified blobs and whole layers that the next pull reuses, and
partial files that the daemon's start removes. Two pulls at once share every download and
conversion (single-flight per blob in the content store, per diff_id here).

The registry client is part R's `hypr.images.registry.RegistryClient`; the puller needs
only what `RegistryClientLike` lists, so it is typed against that.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from hypr import faults
from hypr.images import layers, oci
from hypr.images.config import ImageConfig
from hypr.images.content import ContentStore
from hypr.images.errors import InvalidManifest
from hypr.images.reference import Reference
from hypr.images.store import Image, ImageStore
from hypr.state.images import ImageRow, LayerRow

BLOB_STORED = faults.register("pull.blob_stored", "a layer blob is verified and stored")
LAYER_MADE = faults.register("pull.layer_made", "a layer's squashfs is whole, no rows yet")
BEFORE_COMMIT = faults.register("pull.before_commit", "every layer made, image rows not written")

PullEvent = dict[str, Any]  # Docker's pull progress JSON: status, id, progressDetail
_PROGRESS_STEP = 1 << 20  # a Downloading event per MiB at most


class ResolvedLike(Protocol):
    """What the puller reads of `hypr.images.registry.ResolvedImage`."""

    @property
    def digest(self) -> str: ...
    @property
    def manifest_media_type(self) -> str: ...
    @property
    def config(self) -> bytes: ...
    @property
    def config_descriptor(self) -> oci.Descriptor: ...
    @property
    def layers(self) -> list[oci.Descriptor]: ...


class RegistryClientLike(Protocol):
    """What the puller calls of `hypr.images.registry.RegistryClient`."""

    async def resolve(
        self, ref: Reference, platform: oci.Platform, known: Callable[[str], bytes | None]
    ) -> ResolvedLike: ...
    def stream_blob(self, ref: Reference, desc: oci.Descriptor) -> AsyncIterator[bytes]: ...
    async def aclose(self) -> None: ...


AuthT = TypeVar("AuthT")  # hypr.images.registry_auth.RegistryAuth


class Puller(Generic[AuthT]):
    def __init__(
        self,
        store: ImageStore,
        content: ContentStore,
        client_factory: Callable[[AuthT | None], RegistryClientLike],
        platform: oci.Platform | None = None,
        parallel: int = 3,
    ) -> None:
        self.store = store
        self.content = content
        self.client_factory = client_factory
        self.platform = platform or oci.host_platform()
        self.parallel = parallel
        self._making: dict[str, asyncio.Future[None]] = {}
        self._users: Counter[str] = Counter()  # diff_id -> pulls in progress that want it

    async def pull(
        self, ref: Reference, auth: AuthT | None, progress: Callable[[PullEvent], None]
    ) -> Image:
        """Pull `ref` into the store (or find it there up to date) and return the image."""
        client = self.client_factory(auth)
        pairs: list[tuple[oci.Descriptor, str]] = []  # (layer blob, diff_id) this pull wants
        try:
            resolved = await client.resolve(ref, self.platform, self.content.read)
            config = ImageConfig.from_oci(resolved.config)
            if len(config.diff_ids) != len(resolved.layers):
                raise InvalidManifest(
                    f"{ref.familiar}: the manifest has {len(resolved.layers)} layers, its "
                    f"config {len(config.diff_ids)} diff_ids"
                )
            progress({"status": f"{ref.tag or ref.digest}: Pulling from {ref.repository}"})
            pairs = list(zip(resolved.layers, config.diff_ids, strict=True))
            self._users.update(diff_id for _, diff_id in pairs)
            downloads = asyncio.Semaphore(self.parallel)
            made = await _all(
                self._layer(client, ref, desc, diff_id, downloads, progress)
                for desc, diff_id in pairs
            )
            faults.point(BEFORE_COMMIT)
            image_id = resolved.config_descriptor.digest
            self.content.put_bytes(resolved.config_descriptor, resolved.config)
            before = self.store.rows.by_name(str(ref))
            row = ImageRow(
                id=image_id,
                config=resolved.config.decode(),
                manifest_media_type=resolved.manifest_media_type,
                created=config.created,
                pulled="",
                size=sum(layer.size for layer in made),
                diff_ids=tuple(config.diff_ids),
                tags=(),
                digests=(),
            )
            tag = str(ref) if ref.tag and not ref.digest else None
            self.store.rows.record(row, made, tag, f"{ref.name}@{resolved.digest}")
        except BaseException:
            self._release(pairs, failed=True)
            raise
        finally:
            await client.aclose()
        self._release(pairs, failed=False)
        progress({"status": f"Digest: {resolved.digest}"})
        fresh = before is None or before.id != image_id
        verdict = "Downloaded newer image" if fresh else "Image is up to date"
        progress({"status": f"Status: {verdict} for {ref.familiar}"})
        return self.store.get(f"{ref.name}@{resolved.digest}")

    def _release(self, pairs: list[tuple[oci.Descriptor, str]], failed: bool) -> None:
        """Drop the blobs nobody still pulling needs (the squashfs is what is kept of a
        layer); after a failure also the layers no image uses, so a refused pull leaves
        nothing behind. A pull killed outright leaves them for the next one to reuse."""
        self._users.subtract(diff_id for _, diff_id in pairs)
        for desc, diff_id in pairs:
            if self._users[diff_id] > 0:
                continue
            self._users.pop(diff_id, None)
            self.content.remove(desc.digest)
            if failed and self.store.rows.layer(diff_id) is None:
                self.store.layer_file(diff_id).unlink(missing_ok=True)

    async def _layer(
        self,
        client: RegistryClientLike,
        ref: Reference,
        desc: oci.Descriptor,
        diff_id: str,
        downloads: asyncio.Semaphore,
        progress: Callable[[PullEvent], None],
    ) -> LayerRow:
        short = desc.digest.removeprefix("sha256:")[:12]
        out = self.store.layer_file(diff_id)
        if out.is_file():
            progress({"status": "Already exists", "id": short})
            return LayerRow(diff_id, desc.digest, desc.size, out.stat().st_size)
        compression = oci.LAYER_COMPRESSION.get(desc.media_type)
        if compression is None:
            raise InvalidManifest(f"{ref.familiar}: unsupported layer type {desc.media_type}")
        progress({"status": "Pulling fs layer", "id": short})
        async with downloads:
            chunks = _counted(client.stream_blob(ref, desc), short, desc.size, progress)
            # Nobody else at this layer: make the squashfs while it downloads.
            alone = diff_id not in self._making and not self.content.busy(desc.digest)
            if alone and compression in layers.STREAMABLE and not self.content.has(desc.digest):
                blob = await self._make_streaming(desc, chunks, compression, diff_id)
            else:
                blob = await self.content.ingest(desc, chunks)
        progress({"status": "Download complete", "id": short})
        faults.point(BLOB_STORED)
        progress({"status": "Extracting", "id": short})
        await self._make(blob, compression, diff_id)
        faults.point(LAYER_MADE)
        progress({"status": "Pull complete", "id": short})
        return LayerRow(diff_id, desc.digest, desc.size, out.stat().st_size)

    async def _make_streaming(
        self, desc: oci.Descriptor, chunks: AsyncIterator[bytes], compression: str, diff_id: str
    ) -> Path:
        """Download the blob and convert it at once, the bytes going to both; the squashfs
        counts only once the blob is verified (else it is removed with the failed pull)."""
        feed = layers.Feed()
        out = self.store.layer_file(diff_id)
        with _leading(self._making, diff_id):
            conversion = asyncio.ensure_future(
                asyncio.to_thread(layers.convert_stream, feed, compression, diff_id, out)
            )
            try:
                blob = await self.content.ingest(desc, _teed(chunks, feed))
                await asyncio.to_thread(feed.offer, None)  # the end, if ingest read none
                await asyncio.shield(conversion)  # a thread: cancelling would not stop it
            except BaseException:
                # Wait for the thread, so whatever it made is there for the failed pull's
                # clean-up to remove.
                feed.abort()
                await asyncio.gather(conversion, return_exceptions=True)
                raise
        return blob

    async def _make(self, blob: Path, compression: str, diff_id: str) -> None:
        """Convert once per diff_id, however many pulls want it at the same time."""
        out = self.store.layer_file(diff_id)
        while not out.is_file():
            pending = self._making.get(diff_id)
            if pending is not None:
                with contextlib.suppress(Exception):  # then the loop tries its own
                    await asyncio.shield(pending)
                continue
            with _leading(self._making, diff_id):
                await asyncio.to_thread(layers.convert, blob, compression, diff_id, out)


@contextlib.contextmanager
def _leading(table: dict[str, asyncio.Future[None]], key: str) -> Iterator[None]:
    """Do the work for `key` while others wait on the future in `table`: they learn the
    outcome (a failure makes each waiter try its own) and the entry goes with the work."""
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    table[key] = future
    try:
        yield
    except Exception as exc:
        future.set_exception(exc)
        future.exception()  # waiters retry with their own; no "never retrieved"
        raise
    except BaseException:
        future.cancel()
        raise
    else:
        future.set_result(None)
    finally:
        del table[key]


async def _counted(
    chunks: AsyncIterator[bytes], short: str, total: int, progress: Callable[[PullEvent], None]
) -> AsyncIterator[bytes]:
    """Pass the bytes through, reporting Docker's Downloading progress on the way."""
    current, reported = 0, -_PROGRESS_STEP
    try:
        async for chunk in chunks:
            current += len(chunk)
            if current - reported >= _PROGRESS_STEP or current == total:
                reported = current
                detail = {"current": current, "total": total}
                progress({"status": "Downloading", "id": short, "progressDetail": detail})
            yield chunk
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


async def _teed(chunks: AsyncIterator[bytes], feed: layers.Feed) -> AsyncIterator[bytes]:
    """Pass the bytes through, handing each to `feed` too (a conversion thread), and its
    end once they are all in."""
    async for chunk in chunks:
        if not feed.closed:
            await asyncio.to_thread(feed.offer, chunk)
        yield chunk
    await asyncio.to_thread(feed.offer, None)


async def _all(coroutines: Any) -> list[LayerRow]:
    """Run the layers at once; the first failure cancels the others and is raised as is
    (one clear line, not an exception group)."""
    tasks = [asyncio.create_task(c) for c in coroutines]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
