"""A layer's tar rewritten for overlayfs on its way to tar2sqfs, block by block.

Most entries pass through byte for byte (headers, pax and GNU long-name records, data):
only the names are read. What changes: OCI whiteouts become overlayfs's own (`.wh.NAME` a
character device 0:0 named NAME; `.wh..wh..opq` the xattr `trusted.overlay.opaque=y` on its
directory), directory entries are held back to the end of the stream (tar2sqfs takes a
directory's metadata from its entry wherever it comes, so an opaque marker met after its
directory still reaches it), and a hard link to a file of a lower layer becomes a symlink to
it (one squashfs per layer has no inode to share). Rewriting with `tarfile` object by
object cost more than tar2sqfs itself (bench/RESULTS.md); this passes the bytes on.
"""

from __future__ import annotations

import io
import tarfile
from typing import IO, Protocol

BLOCK = 512
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "SCHILY.xattr.trusted.overlay.opaque"
_META = (b"x", b"L", b"K")  # records that describe the next entry


class Source(Protocol):
    def read(self, size: int = -1) -> bytes: ...


def rewrite(source: Source, sink: IO[bytes]) -> None:
    """Copy the tar from `source` to `sink` as the module's docstring says."""
    out = _Rewriter(sink)
    pending = b""  # pax / GNU records of the entry to come
    path: str | None = None
    link: str | None = None
    while True:
        header = _exact(source, BLOCK)
        if header == bytes(BLOCK):
            break
        kind = header[156:157]
        body = _exact(source, _padded(_size(header)))
        if kind in _META:
            pending += header + body
            path, link = _meta(kind, body[: _size(header)], path, link)
            continue
        name = _clean(path if path is not None else _ustar_name(header))
        target = link if link is not None else _field(header, 157, 100)
        out.entry(kind, name, target, pending + header + body)
        pending, path, link = b"", None, None
    out.finish()


def _meta(kind: bytes, data: bytes, path: str | None, link: str | None) -> tuple[str | None, ...]:
    """The name and link target a pax or GNU record gives the entry that follows."""
    if kind == b"x":
        records = _pax(data)
        return records.get("path", path), records.get("linkpath", link)
    text = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
    return (text, link) if kind == b"L" else (path, text)


class _Rewriter:
    def __init__(self, sink: IO[bytes]) -> None:
        self.sink = sink
        self.directories: dict[str, bytes] = {}
        self.opaque: set[str] = set()
        self.written: set[str] = set()

    def entry(self, kind: bytes, name: str, target: str, raw: bytes) -> None:
        parent, _, base = name.rpartition("/")
        if kind == b"g":
            self.sink.write(raw)
        elif base == OPAQUE:
            self.opaque.add(parent or ".")
        elif base.startswith(WHITEOUT):
            self.sink.write(_whiteout(f"{parent}/{base[len(WHITEOUT) :]}".lstrip("/")))
        elif kind == b"5":
            self.directories[name] = raw
        elif kind == b"1" and _clean(target) not in self.written:
            self.sink.write(_symlink(raw, name, target))
        else:
            self.sink.write(raw)
            self.written.add(name)

    def finish(self) -> None:
        for name in self.opaque - self.directories.keys():
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            self.directories[name] = info.tobuf(tarfile.PAX_FORMAT)
        for name, raw in self.directories.items():
            self.sink.write(_opaque(raw) if name in self.opaque else raw)
        self.sink.write(bytes(2 * BLOCK))


def _exact(source: Source, size: int) -> bytes:
    data = source.read(size)
    while len(data) < size:
        more = source.read(size - len(data))
        if not more:
            if not data and size == BLOCK:
                return bytes(BLOCK)  # no end-of-archive blocks: the end all the same
            raise tarfile.ReadError("unexpected end of data")
        data += more
    return data


def _size(header: bytes) -> int:
    field = header[124:136]
    if field[0] & 0x80:  # base-256, for sizes over 8 GiB
        return int.from_bytes(field[1:], "big")
    text = field.rstrip(b"\0 ").strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise tarfile.ReadError(f"invalid header (size {text!r})") from None


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def _field(header: bytes, start: int, length: int) -> str:
    return header[start : start + length].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _ustar_name(header: bytes) -> str:
    name = _field(header, 0, 100)
    if header[257:262] == b"ustar":
        prefix = _field(header, 345, 155)
        if prefix:
            return f"{prefix}/{name}"
    return name


def _pax(data: bytes) -> dict[str, str]:
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.index(b" ", pos)
        length = int(data[pos:space])
        key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        records[key.decode()] = value.decode("utf-8", "surrogateescape")
        pos += length
    return records


def _clean(name: str) -> str:
    """`./a/b/` and `a/b` name the same entry."""
    while name.startswith("./"):
        name = name[2:]
    return name.strip("/") or "."


def _parse(raw: bytes) -> tarfile.TarInfo:
    """One entry (with its pax records) as tarfile reads it; only for the rare rewrites."""
    with tarfile.open(fileobj=io.BytesIO(raw + bytes(2 * BLOCK)), mode="r:") as tar:
        info = tar.next()
    assert info is not None
    return info


def _whiteout(name: str) -> bytes:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.devmajor, info.devminor = tarfile.CHRTYPE, 0, 0, 0
    return info.tobuf(tarfile.PAX_FORMAT)


def _opaque(raw: bytes) -> bytes:
    info = _parse(raw)
    info.pax_headers = {**info.pax_headers, OPAQUE_XATTR: "y"}
    return info.tobuf(tarfile.PAX_FORMAT)


def _symlink(raw: bytes, name: str, target: str) -> bytes:
    member = _parse(raw)
    link = tarfile.TarInfo(name)
    link.type, link.linkname = tarfile.SYMTYPE, "/" + _clean(target)
    link.uid, link.gid, link.mtime = member.uid, member.gid, member.mtime
    return link.tobuf(tarfile.PAX_FORMAT)
