"""A stage's root filesystem as the host sees it without mounting anything: the listings
of its squashfs layers merged as overlayfs would, so COPY can follow the image's
symlinks (`/bin -> usr/bin`), keep the modes of the directories it writes into, find the
names of `--chown`, and take files out of another stage (`COPY --from`).

Opaque directories (an xattr the listing does not show) are not seen: a directory that a
layer deleted and made again still shows the lower layers' entries here. Only COPY's
bookkeeping uses this view; what a VM sees is always the real overlay.
"""

from __future__ import annotations

import functools
import posixpath
import shlex
import shutil
import stat
import subprocess
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from hypr.errors import InvalidArgument

_KINDS = {"dir": stat.S_IFDIR, "file": stat.S_IFREG, "slink": stat.S_IFLNK,
          "pipe": stat.S_IFIFO, "sock": stat.S_IFSOCK}  # fmt: skip
MAX_LINKS = 40  # as the kernel's path walk


@dataclass(frozen=True)
class Node:
    kind: int  # stat.S_IFDIR, ...
    mode: int  # permission bits with setuid/setgid/sticky
    uid: int
    gid: int
    target: str  # a symlink's target
    layer: Path  # the layer that provides it
    whiteout: bool = False

    @property
    def is_dir(self) -> bool:
        return self.kind == stat.S_IFDIR


@functools.lru_cache(maxsize=256)
def _listing(layer: Path, mtime_ns: int) -> tuple[tuple[str, Node], ...]:
    """One layer's entries, from squashfs-tools-ng's `rdsquashfs -d` (gensquashfs's file
    format: `kind path mode uid gid [extra]`); `mtime_ns` keys the cache."""
    out = subprocess.run(["rdsquashfs", "-d", str(layer)], capture_output=True, check=False)
    if out.returncode != 0:
        raise InvalidArgument(f"cannot read layer {layer.name}: {out.stderr.decode()[-200:]}")
    entries = []
    for line in out.stdout.decode("utf-8", "surrogateescape").splitlines():
        try:
            fields = shlex.split(line)
        except ValueError:
            continue
        if len(fields) < 5:
            continue
        kind_name, path, mode, uid, gid, *extra = fields
        kind = _KINDS.get(kind_name)
        whiteout = kind_name == "nod" and extra[:3] == ["c", "0", "0"]
        if kind is None:
            kind = stat.S_IFCHR if extra[:1] == ["c"] else stat.S_IFBLK
        target = extra[0] if kind == stat.S_IFLNK and extra else ""
        entries.append(("/" + path.strip("/"), Node(kind, int(mode, 8), int(uid), int(gid),
                                                     target, layer, whiteout)))  # fmt: skip
    return tuple(entries)


def listing(layer: Path) -> tuple[tuple[str, Node], ...]:
    return _listing(layer, layer.stat().st_mtime_ns)


class RootView:
    """The merged tree of `layers` (bottom first)."""

    def __init__(self, layers: Sequence[Path]) -> None:
        self.layers = list(layers)
        self.nodes: dict[str, Node] = {}
        for layer in self.layers:
            for path, node in listing(layer):
                old = self.nodes.get(path)
                if node.whiteout or (old is not None and old.is_dir and not node.is_dir):
                    self._drop(path)
                if not node.whiteout:
                    self.nodes[path] = node

    def _drop(self, path: str) -> None:
        prefix = path.rstrip("/") + "/"
        for name in [n for n in self.nodes if n == path or n.startswith(prefix)]:
            del self.nodes[name]

    def lookup(self, path: str) -> Node | None:
        """The entry at `path` as it is (no symlink followed)."""
        return self.nodes.get(posixpath.normpath("/" + path.lstrip("/")))

    def resolve(self, path: str, follow_last: bool = True) -> str:
        """`path` with the symlinks on its way resolved inside the root (as openat2's
        RESOLVE_IN_ROOT: `..` and absolute targets stop at the root)."""
        parts = [p for p in path.split("/") if p]
        done = "/"
        links = 0
        while parts:
            part = parts.pop(0)
            if part == ".":
                continue
            if part == "..":
                done = posixpath.dirname(done)
                continue
            here = posixpath.join(done, part)
            node = self.nodes.get(here)
            if node is not None and node.kind == stat.S_IFLNK and (parts or follow_last):
                links += 1
                if links > MAX_LINKS:
                    raise InvalidArgument(f"too many levels of symbolic links in {path}")
                target = node.target
                parts = [p for p in target.split("/") if p] + parts
                done = "/" if target.startswith("/") else done
                continue
            done = here
        return done

    def is_dir(self, path: str) -> bool:
        node = self.lookup(self.resolve(path))
        return node is not None and node.is_dir

    def read(self, path: str) -> bytes | None:
        """A regular file's content, None if there is none at `path`."""
        real = self.resolve(path)
        node = self.nodes.get(real)
        if node is None or node.kind != stat.S_IFREG:
            return None
        out = subprocess.run(
            ["rdsquashfs", "-c", real, str(node.layer)],
            capture_output=True, check=False,
        )  # fmt: skip
        return out.stdout if out.returncode == 0 else None

    def under(self, path: str) -> Iterator[str]:
        """`path` and every entry below it."""
        prefix = path.rstrip("/") + "/"
        for name in self.nodes:
            if name == path or name.startswith(prefix) or path == "/":
                yield name

    def extract(self, paths: Sequence[str], dest: Path) -> None:
        """Copy the entries at `paths` (resolved, absolute) and below into `dest`, as the
        merged root has them: each layer bottom first, a layer's whiteouts deleting what
        the layers under it put there."""
        for layer in self.layers:
            entries = listing(layer)
            wanted = {p for p, _ in entries if any(_within(p, root) for root in paths)}
            if not wanted:
                continue
            for path, node in entries:
                if node.whiteout and path in wanted:
                    _remove(dest / path.lstrip("/"))
            dirs = sorted({_dir_of(root, entries) for root in paths})
            command = ["sqfs2tar", "-k", *(a for d in dirs if d != "/" for a in ("-d", d)),
                       str(layer)]  # fmt: skip
            with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
                assert proc.stdout is not None and proc.stderr is not None
                with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                    for member in tar:
                        name = "/" + member.name.strip("/")
                        if name not in wanted or member.isdev():
                            continue
                        _remove(dest / name.lstrip("/"), keep_dir=member.isdir())
                        tar.extract(member, dest, numeric_owner=True, filter="fully_trusted")
                error = proc.stderr.read().decode(errors="replace")
            if proc.returncode != 0:
                raise InvalidArgument(f"cannot read layer {layer.name}: {error[-200:]}")


def _dir_of(root: str, entries: Sequence[tuple[str, Node]]) -> str:
    """The directory sqfs2tar selects for `root`: itself, or a file's parent."""
    kinds = dict(entries)
    node = kinds.get(root)
    return root if node is None or node.is_dir else posixpath.dirname(root)


def _remove(path: Path, keep_dir: bool = False) -> None:
    if path.is_dir() and not path.is_symlink():
        if not keep_dir:
            shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _within(path: str, root: str) -> bool:
    return root == "/" or path == root or path.startswith(root.rstrip("/") + "/")
