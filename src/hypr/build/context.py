"""Build contexts as Docker sends them: a tar stream from the client, unpacked by the daemon.

The client side follows the docker CLI (`archive.TarWithOptions` with the .dockerignore
patterns and `ChownOpts` 0:0): a sorted walk, symlinks kept as links, modes and whole-second
mtimes kept, owners 0:0 with no names; the Dockerfile and .dockerignore always go in, and a
Dockerfile outside the context is added as `.dockerfile.<20 hex>` and named in the
.dockerignore (`AddDockerfileToBuildContext`). The daemon side extracts such a stream
refusing anything that could write outside the destination.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from hypr.build.dockerignore import IgnoreRules, read_rules
from hypr.errors import InvalidArgument


def pack_context(context: Path, dockerfile: Path, out: IO[bytes]) -> str:
    """Write the context as an uncompressed tar to `out`; return the Dockerfile's name in it
    (what the API's `dockerfile=` parameter takes)."""
    if not context.is_dir():
        raise InvalidArgument(f"unable to prepare context: {context} is not a directory")
    if not dockerfile.is_file():
        raise InvalidArgument(f"cannot find Dockerfile: {dockerfile}")
    root = context.resolve()
    real_dockerfile = dockerfile.resolve()
    inside = real_dockerfile.is_relative_to(root)
    name = real_dockerfile.relative_to(root).as_posix() if inside else None
    rules = read_rules(context, dockerfile)
    # TrimBuildFilesFromExcludes: the .dockerignore and the Dockerfile are re-included.
    keep = [path for path in (".dockerignore", name) if path and rules.ignored(path)]
    rules = rules.plus([f"!{path}" for path in keep])
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        ignore_entry: tarfile.TarInfo | None = None
        for rel in _walk(rules, root, ""):
            info = _add(tar, root / rel, rel, defer=rel == ".dockerignore" and name is None)
            ignore_entry = info or ignore_entry
        if name is None:
            name = _add_outside_dockerfile(tar, root, real_dockerfile, ignore_entry)
    return name


def _walk(rules: IgnoreRules, directory: Path, prefix: str) -> Iterator[str]:
    """Relative paths in Go's WalkDir order (sorted, parents first), ignored ones skipped."""
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError as e:
        raise InvalidArgument(f"cannot read {directory}: {e.strerror}") from None
    for entry in entries:
        rel = prefix + entry.name
        is_dir = entry.is_dir(follow_symlinks=False)
        if rules.ignored(rel):
            if is_dir and rules.may_contain_exceptions(rel):
                yield from _walk(rules, Path(entry.path), rel + "/")
            continue
        yield rel
        if is_dir:
            yield from _walk(rules, Path(entry.path), rel + "/")


def _add(tar: tarfile.TarFile, path: Path, rel: str, defer: bool = False) -> tarfile.TarInfo | None:
    """Add one entry as the CLI's archive does; sockets, devices and FIFOs are skipped.

    With `defer`, the entry is returned instead of written (a .dockerignore to amend)."""
    try:
        info = tar.gettarinfo(str(path), arcname=rel)
    except OSError as e:
        raise InvalidArgument(f"cannot read {path}: {e.strerror}") from None
    if info is None or not (info.isreg() or info.isdir() or info.issym() or info.islnk()):
        return None
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = int(info.mtime)
    if defer:
        return info
    if info.isreg():
        try:
            with path.open("rb") as f:
                tar.addfile(info, f)
        except OSError as e:
            raise InvalidArgument(f"cannot read {path}: {e.strerror}") from None
    else:
        tar.addfile(info)
    return None


def _add_outside_dockerfile(
    tar: tarfile.TarFile, root: Path, dockerfile: Path, ignore_entry: tarfile.TarInfo | None
) -> str:
    """A Dockerfile outside the context goes in under a random name, which the
    .dockerignore then lists (so that `COPY .` leaves it out), as the docker CLI does."""
    name = ".dockerfile." + secrets.token_hex(10)
    now = int(time.time())
    _add_bytes(tar, name, dockerfile.read_bytes(), now, 0o600)
    if ignore_entry is not None:
        content = (root / ".dockerignore").read_bytes() + f"\n{name}\n".encode()
        _add_bytes(tar, ".dockerignore", content, int(ignore_entry.mtime), ignore_entry.mode)
    else:
        _add_bytes(tar, ".dockerignore", f"\n{name}\n".encode(), now, 0o600)
    return name


def _add_bytes(tar: tarfile.TarFile, name: str, content: bytes, mtime: int, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(content), mtime, mode
    tar.addfile(info, _BytesReader(content))


class _BytesReader:
    """A minimal readable for tarfile.addfile."""

    def __init__(self, content: bytes) -> None:
        self.content, self.pos = content, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self.content) if size < 0 else self.pos + size
        chunk, self.pos = self.content[self.pos : end], min(end, len(self.content))
        return chunk


# --- the daemon side -----------------------------------------------------------------------


def unpack_context(stream: IO[bytes], dest: Path) -> None:
    """Extract a context tar (plain or compressed) into the existing directory `dest`.

    Regular files, directories, symlinks (kept verbatim) and hard links to earlier members;
    absolute names, `..`, members under a symlink and special files are refused with one
    line. Modes and mtimes are kept, owners are not.
    """
    if not dest.is_dir():
        raise InvalidArgument(f"build context destination {dest} is not a directory")
    dirs: list[tuple[Path, tarfile.TarInfo]] = []
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                _extract(tar, member, dest, dirs)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise InvalidArgument(f"invalid build context: {e}") from None
    for path, member in reversed(dirs):  # deepest first, after their contents
        os.chmod(path, member.mode & 0o7777)
        os.utime(path, (member.mtime, member.mtime))


def _member_path(name: str) -> PurePosixPath | None:
    """The member's safe relative path; None for the root itself."""
    if name.startswith("/"):
        raise InvalidArgument(f"invalid build context: absolute path {name!r}")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidArgument(f"invalid build context: {name!r} leaves the context")
    return PurePosixPath(*parts) if parts else None


def _parent_dir(dest: Path, rel: PurePosixPath, name: str) -> Path:
    """The member's parent directory, created as needed and never reached through a link."""
    current = dest
    for part in rel.parts[:-1]:
        current = current / part
        try:
            mode = current.lstat().st_mode
        except FileNotFoundError:
            current.mkdir(mode=0o755)
            continue
        if stat.S_ISLNK(mode):
            raise InvalidArgument(f"invalid build context: {name!r} is under a symbolic link")
        if not stat.S_ISDIR(mode):
            raise InvalidArgument(f"invalid build context: {name!r} is under a non-directory")
    return current


def _extract(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    dest: Path,
    dirs: list[tuple[Path, tarfile.TarInfo]],
) -> None:
    rel = _member_path(member.name)
    if rel is None:
        return
    target = _parent_dir(dest, rel, member.name) / rel.name
    if member.isdir():
        if target.is_symlink() or (target.exists() and not target.is_dir()):
            target.unlink()
        target.mkdir(mode=0o755, exist_ok=True)
        dirs.append((target, member))
        return
    if not (member.isreg() or member.issym() or member.islnk()):
        raise InvalidArgument(f"invalid build context: {member.name!r} is a special file")
    _replace(target)
    if member.issym():
        os.symlink(member.linkname, target)
        os.utime(target, (member.mtime, member.mtime), follow_symlinks=False)
        return
    if member.islnk():
        _hard_link(dest, member, target)
        return
    source = tar.extractfile(member)
    assert source is not None  # a regular file always has a body
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        shutil.copyfileobj(source, f)
    os.chmod(target, member.mode & 0o7777)
    os.utime(target, (member.mtime, member.mtime))


def _replace(target: Path) -> None:
    """A later member of the same name replaces the earlier one (never a directory)."""
    if target.is_symlink() or target.exists():
        if target.is_dir() and not target.is_symlink():
            raise InvalidArgument(f"invalid build context: {target.name!r} is a directory")
        target.unlink()


def _hard_link(dest: Path, member: tarfile.TarInfo, target: Path) -> None:
    """A hard link to an earlier regular file of the archive."""
    rel = _member_path(member.linkname)
    if rel is None:
        raise InvalidArgument(f"invalid build context: bad hard link {member.name!r}")
    source = _parent_dir(dest, rel, member.linkname) / rel.name
    try:
        mode = source.lstat().st_mode
    except FileNotFoundError:
        mode = 0
    if not stat.S_ISREG(mode):
        raise InvalidArgument(
            f"invalid build context: hard link {member.name!r} to a missing or non-regular file"
        )
    os.link(source, target, follow_symlinks=False)
