"""COPY and ADD planned on the host: which files go where in the image, with what owner
and mode, as Docker's reference says:

- sources are relative to the context (or to another stage's root with `--from`); globs
  match as Go's filepath.Match (`*` stops at `/`); a source may not leave the context, by
  `..`, by an absolute path, or through a symlink;
- a directory source copies its contents; several sources, or a destination ending in `/`
  or naming a directory of the image, copy into that directory;
- a relative destination is under WORKDIR; symlinks of the image on the way are followed
  inside its root (`COPY x /bin/` in an image whose `/bin` is `usr/bin`);
- owners are 0:0 unless `--chown` (another stage's files keep theirs); `--chmod` sets the
  mode; ADD unpacks a local tar archive (plain, gzip, bzip2, xz) into the destination.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hypr.build.layer import Entry
from hypr.build.rootview import RootView
from hypr.errors import InvalidArgument

_GLOB = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class CopyOptions:
    owner: tuple[int, int] | None = None  # --chown, resolved
    chmod: int | None = None
    keep_owner: bool = False  # --from: files keep their owners unless --chown
    unpack: bool = False  # ADD: local archives are unpacked
    inside_context: bool = True  # sources must stay in the root (the build context)


def plan(
    sources: Sequence[str],
    dest: str,
    root: Path,
    view: RootView,
    workdir: str,
    options: CopyOptions,
    what: str = "COPY",
) -> list[Entry]:
    """The entries of the layer, parents first; InvalidArgument names a bad source."""
    found: list[Path] = []
    for source in sources:
        found += _match(source, root, options.inside_context, what)
    if not posixpath.isabs(dest):
        dest = posixpath.join(workdir or "/", dest)
    into_dir = dest.endswith("/") or len(found) > 1 or view.is_dir(dest)
    if len(found) > 1 and not dest.endswith("/") and not view.is_dir(dest):
        raise InvalidArgument(
            f"{what}: when using several sources the destination must be a directory "
            f"and end with a /: {dest}"
        )
    writer = _Planner(view, options)
    for path in found:
        info = path.lstat()
        if stat.S_ISDIR(info.st_mode):
            writer.tree(path, _resolved_dir(view, dest))
        elif options.unpack and tarfile.is_tarfile(path):
            writer.archive(path, _resolved_dir(view, dest))
        else:
            target = (
                posixpath.join(_resolved_dir(view, dest), path.name)
                if into_dir
                else posixpath.join(_resolved_dir(view, posixpath.dirname(dest)),
                                    posixpath.basename(dest.rstrip("/")))
            )  # fmt: skip
            writer.file(path, target)
    return writer.entries()


def _resolved_dir(view: RootView, path: str) -> str:
    return view.resolve(path or "/")


def _match(source: str, root: Path, inside: bool, what: str) -> list[Path]:
    if inside and source.startswith("/"):
        raise InvalidArgument(f"{what}: {source}: an absolute path is outside the build context")
    clean = posixpath.normpath(source.lstrip("/"))
    if inside and (clean == ".." or clean.startswith("../")):
        raise InvalidArgument(f"{what}: {source}: the source is outside the build context")
    if not _GLOB.search(clean):
        path = root / clean if clean != "." else root
        if not os.path.lexists(path):
            where = " in the build context" if inside else ""
            raise InvalidArgument(f"{what}: {source}: no such file or directory{where}")
        return [_inside(path, root, source, inside, what)]
    pattern = re.compile(_translate(clean))
    hits = []
    for base, dirs, files in os.walk(root):
        dirs.sort()
        for name in [*dirs, *sorted(files)]:
            rel = os.path.relpath(os.path.join(base, name), root)
            if pattern.fullmatch(rel):
                hits.append(_inside(Path(base, name), root, source, inside, what))
    if not hits:
        raise InvalidArgument(f"{what}: no source files were specified: {source} matches nothing")
    return hits


def _inside(path: Path, root: Path, source: str, inside: bool, what: str) -> Path:
    """A named source that is a symlink is followed, and must stay in the context."""
    if not path.is_symlink():
        return path
    real = Path(os.path.realpath(path))
    if inside and not real.is_relative_to(os.path.realpath(root)):
        raise InvalidArgument(f"{what}: {source}: a symlink that leaves the build context")
    if not real.exists():
        raise InvalidArgument(f"{what}: {source}: a symlink to nothing")
    return real


def _translate(pattern: str) -> str:
    """Go's filepath.Match as a regex: `*` and `?` never match `/`."""
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(char))
            else:
                body = pattern[i + 1 : end].replace("\\", "\\\\")
                out.append("[" + ("^" + body[1:] if body.startswith("^") else body) + "]")
                i = end
        elif char == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


class _Planner:
    """Collects entries by path: parents from the image as they are, new ones made."""

    def __init__(self, view: RootView, options: CopyOptions) -> None:
        self.view = view
        self.options = options
        self._entries: dict[str, Entry] = {}

    def entries(self) -> list[Entry]:
        return [self._entries[name] for name in sorted(self._entries)]

    def file(self, path: Path, target: str) -> None:
        self._parents(target)
        self._add(path, target)

    def tree(self, top: Path, target: str) -> None:
        self._parents(target + "/x")
        if target != "/" and self.view.lookup(target) is None:
            self._add(top, target)
        for base, dirs, files in os.walk(top):
            dirs.sort()
            for name in [*dirs, *sorted(files)]:
                path = Path(base, name)
                self._add(path, posixpath.join(target, os.path.relpath(path, top)))

    def archive(self, path: Path, target: str) -> None:
        """ADD of a local archive: its members under `target`, owners as the archive has."""
        self._parents(target + "/x")
        with tarfile.open(path) as tar:
            for member in tar:
                name = posixpath.normpath(member.name.lstrip("/"))
                if name.startswith("..") or member.isdev():
                    continue
                member.name = posixpath.join(target, name).lstrip("/")
                if member.islnk():
                    member.linkname = posixpath.join(target, member.linkname).lstrip("/")
                if member.isreg():
                    data = tar.extractfile(member)
                    assert data is not None
                    spill = path.with_name(f".unpacked-{len(self._entries)}")
                    spill.write_bytes(data.read())  # the context dir is the build's own
                    self._entries[member.name] = Entry(member, spill)
                else:
                    self._entries[member.name] = Entry(member)

    def _parents(self, target: str) -> None:
        """Every directory above `target`: as the image has it, else new (0755, root)."""
        parts = [p for p in posixpath.dirname(target).split("/") if p]
        for i in range(len(parts)):
            path = "/" + "/".join(parts[: i + 1])
            name = path.lstrip("/")
            if name in self._entries:
                continue
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            node = self.view.lookup(path)
            if node is not None and node.is_dir:
                info.mode, info.uid, info.gid = node.mode, node.uid, node.gid
            else:
                info.mode = 0o755
                if self.options.owner is not None:
                    info.uid, info.gid = self.options.owner
            self._entries[name] = Entry(info)

    def _add(self, path: Path, target: str) -> None:
        st = path.lstat()
        name = target.lstrip("/")
        info = tarfile.TarInfo(name)
        info.mtime = int(st.st_mtime)
        info.mode = stat.S_IMODE(st.st_mode)
        if self.options.owner is not None:
            info.uid, info.gid = self.options.owner
        elif self.options.keep_owner:
            info.uid, info.gid = st.st_uid, st.st_gid
        source: Path | None = None
        if stat.S_ISDIR(st.st_mode):
            info.type = tarfile.DIRTYPE
        elif stat.S_ISLNK(st.st_mode):
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
        elif stat.S_ISREG(st.st_mode):
            info.size, source = st.st_size, path
        else:
            return  # sockets, fifos and devices are not copied
        if self.options.chmod is not None and not stat.S_ISLNK(st.st_mode):
            info.mode = self.options.chmod
        self._entries[name] = Entry(info, source)


def parse_chmod(text: str) -> int:
    if not re.fullmatch(r"[0-7]{3,4}", text):
        raise InvalidArgument(f"--chmod={text}: only octal modes (755, 0644) are supported")
    return int(text, 8)


def parse_chown(text: str, view: RootView) -> tuple[int, int]:
    """`--chown=user[:group]`, names looked up in the image's /etc/passwd and /etc/group;
    a user alone gives its own group... as Docker: the group of the same number."""
    user, _, group = text.partition(":")
    uid = _lookup(user, view, "/etc/passwd", text)
    gid = _lookup(group, view, "/etc/group", text) if group else uid
    return uid, gid


def _lookup(name: str, view: RootView, file: str, text: str) -> int:
    if name.isdigit():
        return int(name)
    content = view.read(file) or b""
    for line in content.decode(errors="replace").splitlines():
        fields = line.split(":")
        if len(fields) > 2 and fields[0] == name and fields[2].isdigit():
            return int(fields[2])
    raise InvalidArgument(f"--chown={text}: no {name!r} in the image's {file}")
