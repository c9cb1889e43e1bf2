"""A layer blob (tar, gzip or zstd) becomes one squashfs file that the guest's overlayfs
stacks: `layers/<diff_id hex>.squashfs`.

The tar streams from the blob through Python's tarfile into squashfs-tools-ng's `tar2sqfs`
on stdin, so nothing is unpacked onto the host's disk and no root is needed; modes, owners,
symlinks, hard links, device nodes and xattrs (pax `SCHILY.xattr.*`) pass through as they
are (a hard link to a lower layer's file becomes a symlink to it: see _cross_layer_link).
On the way, OCI whiteouts become overlayfs's own: `.wh.NAME` a character device 0:0 named
NAME, `.wh..wh..opq` the xattr `trusted.overlay.opaque=y` on its directory. Directory entries
are held back to the end of the stream (tar2sqfs takes a directory's metadata from its entry
wherever it comes), so an opaque marker met after its directory still reaches it in one
pass. The sha256 of the uncompressed tar (the diff_id) is computed on the way and
must match the image config's.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, cast

from hypr.images.content import DiskFull
from hypr.images.errors import DigestMismatch, InvalidManifest

SQUASHFS_COMPRESSION = "lz4"  # as the built-in image: fastest to decompress under TCG
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "SCHILY.xattr.trusted.overlay.opaque"
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
    partial = out.with_name(out.name + ".partial")
    try:
        with _uncompressed(blob, compression) as raw:
            reader = _HashingReader(raw)
            _to_squashfs(reader, partial)
            actual = reader.drain()
        if actual != diff_id:
            raise DigestMismatch(
                f"layer {blob.name[:12]} unpacks to {actual[:19]}, the image config says "
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
        with gzip.open(blob, "rb") as unzipped:
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
        _rewrite(reader, proc.stdin)
        proc.stdin.close()
    except tarfile.TarError as exc:
        proc.kill()
        proc.wait()
        raise InvalidManifest(f"a layer is not a valid tar archive: {exc}") from None
    except BrokenPipeError:
        pass  # tar2sqfs stopped early: its exit status and message say why
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


def _rewrite(reader: _HashingReader, sink: IO[bytes]) -> None:
    """Copy the tar, turning OCI whiteouts into overlayfs ones, directories last."""
    directories: dict[str, tarfile.TarInfo] = {}
    opaque: set[str] = set()
    written: set[str] = set()
    with (
        tarfile.open(fileobj=reader, mode="r|") as source,  # type: ignore[call-overload]
        tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as target,
    ):
        for member in source:
            name = _clean(member.name)
            parent, _, base = name.rpartition("/")
            if base == OPAQUE:
                opaque.add(parent or ".")
            elif base.startswith(WHITEOUT):
                target.addfile(_whiteout(f"{parent}/{base[len(WHITEOUT) :]}".lstrip("/")))
            elif member.isdir():
                directories[name] = member
            elif member.isreg():
                target.addfile(member, source.extractfile(member))
                written.add(name)
            elif member.islnk() and _clean(member.linkname) not in written:
                target.addfile(_cross_layer_link(member))
            else:
                target.addfile(member)
                written.add(name)
        for name in opaque - directories.keys():
            directory = tarfile.TarInfo(name)
            directory.type, directory.mode = tarfile.DIRTYPE, 0o755
            directories[name] = directory
        for name, directory in directories.items():
            if name in opaque:
                directory.pax_headers = {**directory.pax_headers, OPAQUE_XATTR: "y"}
            target.addfile(directory)


def _clean(name: str) -> str:
    """`./a/b/` and `a/b` name the same entry."""
    while name.startswith("./"):
        name = name[2:]
    return name.strip("/") or "."


def _cross_layer_link(member: tarfile.TarInfo) -> tarfile.TarInfo:
    """A hard link to a file of a lower layer (OCI allows it; tar2sqfs cannot resolve it,
    one squashfs per layer has no inode to share) becomes a symlink to that file's absolute
    path: the same content through the stacked layers, but no longer the same inode."""
    link = tarfile.TarInfo(member.name)
    link.type, link.linkname = tarfile.SYMTYPE, "/" + _clean(member.linkname)
    link.uid, link.gid, link.mtime = member.uid, member.gid, member.mtime
    return link


def _whiteout(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.devmajor, info.devminor = tarfile.CHRTYPE, 0, 0, 0
    return info
