"""The content-addressed blob store under `$HYPR_DATA_DIR/images/`.

A blob becomes visible in `blobs/sha256/<hex>` only after its size and sha256 matched while
it streamed into `ingest/<hex>.partial`, so nothing in `blobs/` is ever untrusted or half
written. Two ingests of one digest at once download it once: the second awaits the first.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

from hypr.errors import InternalError
from hypr.images import oci
from hypr.images.errors import DigestMismatch

PARTIAL = ".partial"


class DiskFull(InternalError):
    """The data directory's file system has no room left; nothing half written is kept."""

    status = 507


class ContentStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.ingest_dir = root / "ingest"
        for directory in (root, root / "blobs", self.blobs, self.ingest_dir):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._inflight: dict[str, asyncio.Future[Path]] = {}

    def path(self, digest: str) -> Path:
        if not oci.DIGEST.match(digest):
            raise DigestMismatch(f"unsupported digest {digest!r}: only sha256:<64 hex> is")
        return self.blobs / digest.removeprefix("sha256:")

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def busy(self, digest: str) -> bool:
        """Whether a download of `digest` is under way."""
        return digest in self._inflight

    def read(self, digest: str) -> bytes | None:
        """A small stored blob's bytes (a config), None if absent; verified on the way in."""
        try:
            return self.path(digest).read_bytes()
        except FileNotFoundError:
            return None

    def remove(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)

    def clean_partials(self) -> int:
        """Delete what a killed download left in `ingest/`; returns how many files."""
        removed = 0
        for partial in self.ingest_dir.iterdir():
            partial.unlink(missing_ok=True)
            removed += 1
        return removed

    async def ingest(self, desc: oci.Descriptor, chunks: AsyncIterator[bytes]) -> Path:
        """Store the blob `chunks` yield once it matches `desc`; a blob already stored, or
        being stored by another caller, is not downloaded again (`chunks` is then closed
        unread). Raises DigestMismatch when the bytes are not what `desc` says."""
        target = self.path(desc.digest)
        try:
            while True:
                if target.is_file():
                    return target
                pending = self._inflight.get(desc.digest)
                if pending is None:
                    break
                try:
                    return await asyncio.shield(pending)
                except (DigestMismatch, OSError, asyncio.CancelledError):
                    # The other download failed or its client went away: try with ours,
                    # unless we ourselves were cancelled.
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise
            future: asyncio.Future[Path] = asyncio.get_running_loop().create_future()
            self._inflight[desc.digest] = future
            try:
                path = await self._write(desc, chunks, target)
            except Exception as exc:
                future.set_exception(exc)
                future.exception()  # the waiters retry on their own; no "never retrieved"
                raise
            except BaseException:
                future.cancel()
                raise
            finally:
                del self._inflight[desc.digest]
            future.set_result(path)
            return path
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()

    def put_bytes(self, desc: oci.Descriptor, data: bytes) -> Path:
        """Store a small blob already in memory (a config, a manifest), verified."""
        _check(desc, hashlib.sha256(data), len(data))
        target = self.path(desc.digest)
        if not target.is_file():
            partial = self.ingest_dir / (target.name + PARTIAL)
            with _disk_full_guard(desc, partial):
                partial.write_bytes(data)
                partial.chmod(0o600)
                os.replace(partial, target)
        return target

    async def _write(
        self, desc: oci.Descriptor, chunks: AsyncIterator[bytes], target: Path
    ) -> Path:
        partial = self.ingest_dir / (target.name + PARTIAL)
        digest = hashlib.sha256()
        written = 0
        try:
            with _disk_full_guard(desc, partial):
                fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as out:
                    async for chunk in chunks:
                        written += len(chunk)
                        if written > desc.size:
                            raise DigestMismatch(
                                f"blob {desc.digest} is larger than the {desc.size} bytes "
                                "its descriptor says: refused"
                            )
                        digest.update(chunk)
                        out.write(chunk)
                    _check(desc, digest, written)
                    out.flush()
                    await asyncio.to_thread(os.fsync, out.fileno())
                os.replace(partial, target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return target


def _check(desc: oci.Descriptor, digest: hashlib._Hash, size: int) -> None:
    if size != desc.size:
        raise DigestMismatch(
            f"blob {desc.digest} has {size} bytes, its descriptor says {desc.size}: refused"
        )
    actual = "sha256:" + digest.hexdigest()
    if actual != desc.digest:
        raise DigestMismatch(
            f"blob {desc.digest} does not match its digest (got {actual}): refused"
        )


@contextmanager
def _disk_full_guard(desc: oci.Descriptor, partial: Path) -> Iterator[None]:
    """Turn ENOSPC/EDQUOT into one clear line, and remove the partial file."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        partial.unlink(missing_ok=True)
        raise DiskFull(
            f"no space left on the device of {partial.parent.parent} while storing "
            f"{desc.digest[:19]}: free some space (hypr image prune) and pull again"
        ) from None
