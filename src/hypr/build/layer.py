"""Layers a build makes, as OCI layer tars (the form whose sha256 is a diff_id):

- a RUN step's: the build VM's overlay upper directory as busybox tar read it, with
  overlayfs's whiteouts (0:0 character devices, opaque directories) turned into OCI's
  `.wh.` entries, and the files the agent itself writes for every VM left out;
- a COPY or ADD step's: the entries `hypr.build.copy` planned, written with their
  metadata, the files read from the context or from another stage.

The image store then turns the tar into its squashfs like any pulled layer.
"""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
# Written by the agent at every boot (Docker bind-mounts them): never part of a layer.
AGENT_FILES = frozenset({"etc/hosts", "etc/resolv.conf", "etc/hostname"})
_CHUNK = 1 << 20


class _HashingWriter:
    """A file that hashes what goes through it: the diff_id costs no second pass."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        return self.raw.write(data)

    def digest(self) -> str:
        return "sha256:" + self.sha256.hexdigest()


def upper_to_oci(raw: Path, out: Path, opaque_dirs: Iterable[str]) -> str:
    """Rewrite the upper directory's tar at `raw` as an OCI layer at `out`; the diff_id."""
    opaque = {d.strip("/") for d in opaque_dirs}
    with out.open("wb") as sink:
        writer = _HashingWriter(sink)
        with (
            tarfile.open(raw, "r:") as source,
            tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar,  # type: ignore[call-overload]
        ):
            for member in source:
                name = _clean(member.name)
                if name in ("", ".") or name in AGENT_FILES:
                    continue
                member.name = name
                if member.ischr() and member.devmajor == 0 and member.devminor == 0:
                    parent, _, base = name.rpartition("/")
                    tar.addfile(_empty(f"{parent}/{WHITEOUT}{base}".lstrip("/"), member))
                    continue
                data = source.extractfile(member) if member.isreg() else None
                tar.addfile(member, data)
                if member.isdir() and name in opaque:
                    tar.addfile(_empty(f"{name}/{OPAQUE}", member))
        return writer.digest()


@dataclass(frozen=True)
class Entry:
    """One entry of a COPY layer: its metadata, and for a file where its bytes are."""

    info: tarfile.TarInfo
    source: Path | None = None


def write_entries(entries: Iterable[Entry], out: Path) -> str:
    """Write a COPY layer; the diff_id."""
    with out.open("wb") as sink:
        writer = _HashingWriter(sink)
        with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            for entry in entries:
                if entry.source is None:
                    tar.addfile(entry.info)
                else:
                    with entry.source.open("rb") as data:
                        tar.addfile(entry.info, data)
        return writer.digest()


def checksum(entries: Iterable[Entry]) -> str:
    """What the cache compares for a COPY: names, kinds, modes, owners, link targets and
    file contents; not times (as Docker decides)."""
    digest = hashlib.sha256()
    for entry in entries:
        info = entry.info
        digest.update(
            f"{info.name}\0{info.type!r}\0{info.mode:o}\0{info.uid}:{info.gid}\0"
            f"{info.linkname}\0{info.size}\0".encode("utf-8", "surrogateescape")
        )
        if entry.source is not None:
            with entry.source.open("rb") as data:
                while chunk := data.read(_CHUNK):
                    digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _empty(name: str, like: tarfile.TarInfo) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode, info.mtime = 0o644, like.mtime
    return info


def _clean(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.strip("/")
