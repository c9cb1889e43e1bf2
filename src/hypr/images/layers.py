"""A layer blob (tar, gzip or zstd) becomes one squashfs file that the guest's overlayfs
stacks: `layers/<diff_id hex>.squashfs`.

The tar streams from the blob into squashfs-tools-ng's `tar2sqfs` on stdin, so nothing is
unpacked onto the host's disk and no root is needed; modes, owners, symlinks, hard links,
device nodes and xattrs (pax `SCHILY.xattr.*`) pass through as they are. On the way
`hypr.images.tarstream` turns OCI whiteouts into overlayfs's own. The sha256 of the
uncompressed tar (the diff_id) is computed on the way and must match the image config's.
"""

from __future__ import annotations

import hashlib
import os
import queue
import shutil
import subprocess
import tarfile
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, cast

from hypr.images import tarstream
from hypr.images.content import DiskFull
from hypr.images.errors import DigestMismatch, InvalidManifest

SQUASHFS_COMPRESSION = "lz4"  # as the built-in image: fastest to decompress under TCG
STREAMABLE = ("gzip", "tar")  # compressions `convert_stream` reads as they download
_CHUNK = 1 << 20
_LOW_SPACE = 1 << 20  # a failed tar2sqfs with less free than this ran out of room


class _HashingReader:
    """Reads through to `raw`, hashing every byte, so the diff_id costs no second pass."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.sha256.update(data)
        return data

    def drain(self) -> str:
        """Hash what tarfile left unread (end-of-archive padding); return the diff_id."""
        while self.read(_CHUNK):
            pass
        return "sha256:" + self.sha256.hexdigest()


def layer_path(root: Path, diff_id: str) -> Path:
    return root / f"{diff_id.removeprefix('sha256:')}.squashfs"


def convert(blob: Path, compression: str, diff_id: str, out: Path) -> Path:
    """Make `out` from the layer `blob`; blocking (run it in a thread). Written under a
    `.partial` name and renamed, so `out` is either whole or absent."""
    try:
        with _uncompressed(blob, compression) as raw:
            return _convert(raw, blob.name[:12], diff_id, out)
    except (OSError, EOFError, zlib.error) as exc:
        raise InvalidManifest(f"a layer is not valid {compression} data: {exc}") from None


def convert_stream(feed: Feed, compression: str, diff_id: str, out: Path) -> Path:
    """`convert` reading the layer from its download as it arrives (gzip or tar), so the
    squashfs is made while the blob downloads; blocking (run it in a thread)."""
    try:
        if compression == "gzip":
            with _gunzipped(feed) as raw:
                return _convert(cast(IO[bytes], raw), diff_id[7:19], diff_id, out)
        if compression == "tar":
            return _convert(cast(IO[bytes], feed), diff_id[7:19], diff_id, out)
        raise InvalidManifest(f"cannot convert {compression} layers while they download")
    except (OSError, EOFError, zlib.error) as exc:
        if feed.aborted:
            raise InvalidManifest("the layer's download failed") from None
        raise InvalidManifest(f"a layer is not valid {compression} data: {exc}") from None
    finally:
        feed.close()


class Feed:
    """The read end of a layer download for a conversion thread. The event loop `offer`s
    each chunk as it arrives; the queue is bounded, so a slower conversion slows the
    download instead of holding the blob in memory."""

    def __init__(self, depth: int = 64) -> None:
        self._queue: queue.Queue[bytes | None] = queue.Queue(depth)
        self._buffer = bytearray()
        self._pos = 0  # what of _buffer was read already
        self._eof = False
        self.aborted = False
        self.error: BaseException = OSError("the download was abandoned")
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        while not self._eof and (size < 0 or len(self._buffer) - self._pos < size):
            item = self._queue.get()
            if self.aborted:
                raise self.error
            if item is None:
                self._eof = True
            else:
                del self._buffer[: self._pos]
                self._pos = 0
                self._buffer += item
        end = len(self._buffer) if size < 0 else min(self._pos + size, len(self._buffer))
        data = bytes(self._buffer[self._pos : end])
        self._pos = end
        return data

    def offer(self, chunk: bytes | None, timeout: float = 0.1) -> bool:
        """Hand a chunk (None: the end) to the reader; blocking, False once it is gone."""
        while not self.closed:
            try:
                self._queue.put(chunk, timeout=timeout)
                return True
            except queue.Full:
                continue
        return False

    def abort(self, error: BaseException | None = None) -> None:
        """The writer failed: the reader raises `error` (or OSError) from now on."""
        self.error = error or OSError("the download was abandoned")
        self.aborted = True
        with suppress(queue.Full):
            self._queue.put_nowait(None)

    def close(self) -> None:
        """The reader is done: drop what is queued, so no offer waits on it."""
        self.closed = True
        with suppress(queue.Empty):
            while True:
                self._queue.get_nowait()


@contextmanager
def _gunzipped(source: tarstream.Source) -> Iterator[Feed]:
    """The gzip stream `source` decompressed in a thread of its own (zlib lets go of the
    GIL), so the tar rewrite runs beside it: about a third faster than in one thread."""
    inner = Feed()

    def run() -> None:
        try:
            unzip = zlib.decompressobj(31)
            while chunk := source.read(_CHUNK // 4):
                data = unzip.decompress(chunk)
                while unzip.eof and unzip.unused_data:  # a next gzip member
                    rest, unzip = unzip.unused_data, zlib.decompressobj(31)
                    data += unzip.decompress(rest)
                if data and not inner.offer(data):
                    return
            if not unzip.eof:
                raise EOFError("the gzip stream ends early")
            inner.offer(None)
        except BaseException as exc:
            inner.abort(exc)

    thread = threading.Thread(target=run, name="gunzip", daemon=True)
    thread.start()
    try:
        yield inner
    finally:
        inner.close()
        thread.join()


def _convert(raw: IO[bytes], name: str, diff_id: str, out: Path) -> Path:
    partial = out.with_name(out.name + ".partial")
    try:
        reader = _HashingReader(raw)
        _to_squashfs(reader, partial)
        actual = reader.drain()
        if actual != diff_id:
            raise DigestMismatch(
                f"layer {name} unpacks to {actual[:19]}, the image config says "
                f"{diff_id[:19]}: refused"
            )
        partial.chmod(0o600)
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return out


def clean_partials(root: Path) -> None:
    for partial in root.glob("*.partial"):
        partial.unlink(missing_ok=True)


@contextmanager
def _uncompressed(blob: Path, compression: str) -> Iterator[IO[bytes]]:
    if compression == "tar":
        with blob.open("rb") as raw:
            yield raw
    elif compression == "gzip":
        with blob.open("rb") as raw, _gunzipped(raw) as unzipped:
            yield cast(IO[bytes], unzipped)
    elif compression == "zstd":
        zstd = shutil.which("zstd")
        if zstd is None:
            raise InvalidManifest("zstd layers need the zstd program, which is not installed")
        with subprocess.Popen([zstd, "-dcq", str(blob)], stdout=subprocess.PIPE) as proc:
            assert proc.stdout is not None
            try:
                yield proc.stdout
            finally:
                proc.stdout.read()
            if proc.wait() != 0:
                raise InvalidManifest(f"layer {blob.name[:12]} is not valid zstd data")
    else:
        raise InvalidManifest(f"unsupported layer compression {compression!r}")


def _to_squashfs(reader: _HashingReader, out: Path) -> None:
    cmd = ["tar2sqfs", "-q", "-f", "--no-skip", "-c", SQUASHFS_COMPRESSION, str(out)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stderr is not None
    try:
        tarstream.rewrite(reader, proc.stdin)
        proc.stdin.close()
    except tarfile.TarError as exc:
        proc.kill()
        proc.wait()
        raise InvalidManifest(f"a layer is not a valid tar archive: {exc}") from None
    except BrokenPipeError:
        pass  # tar2sqfs stopped early: its exit status and message say why
    except BaseException:  # the source failed (a download abandoned): stop tar2sqfs too
        proc.kill()
        proc.wait()
        raise
    finally:
        if not proc.stdin.closed:
            with suppress(BrokenPipeError):
                proc.stdin.close()
    error = proc.stderr.read().decode(errors="replace").strip()
    proc.stderr.close()
    if proc.wait() != 0:
        # tar2sqfs reports ENOSPC as a bare "I/O error": look at the file system itself.
        if "No space left" in error or shutil.disk_usage(out.parent).free < _LOW_SPACE:
            raise DiskFull(
                f"no space left on the device of {out.parent} while making a layer: free "
                "some space (hypr image prune) and pull again"
            )
        last = error.splitlines()[-1] if error else f"exit status {proc.returncode}"
        raise InvalidManifest(f"a layer could not be made into squashfs: {last}")
