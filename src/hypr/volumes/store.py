"""The volumes' directories on disk: `<data_dir>/volumes/local/<name>` for a standalone
volume, `<data_dir>/volumes/<stack>/<name>` for a compose stack's (the seeds' layout).

A directory removed is first renamed into `volumes/.trash/` (one rename, so it is gone at
once) and deleted there by a thread: a volume of a million files does not stall hyprd.
Whatever a killed hyprd left in the trash is deleted at the next start. The store knows
nothing of rows: the service tells it which directories are volumes.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from pathlib import Path

from hypr.volumes.names import directory_name

log = logging.getLogger(__name__)

STANDALONE = "local"
TRASH = ".trash"


class VolumeStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.abspath(root))  # Docker's Mountpoint is absolute
        self.trash = self.root / TRASH

    def path_for(self, name: str, stack: str | None) -> Path:
        return self.root / (stack or STANDALONE) / directory_name(name, stack)

    def create(self, path: Path) -> None:
        """Make a volume's empty directory (0755; its parents 0700, like the data dir). The
        caller holds the row for `path`, so a directory already there is a leftover of a
        volume removed before, never another volume's: it is replaced."""
        for parent in (self.root, path.parent):
            parent.mkdir(mode=0o700, exist_ok=True)
        try:
            path.mkdir(mode=0o755)
        except FileExistsError:
            self.discard(path)
            path.mkdir(mode=0o755)
        try:
            path.chmod(0o755)  # whatever the umask
        except BaseException:
            path.rmdir()
            raise

    def discard(self, path: Path) -> None:
        """Remove a volume's directory and everything in it. If it cannot be moved (a
        mount point: never delete into another filesystem) it stays, with a warning."""
        try:
            self.trash.mkdir(mode=0o700, exist_ok=True)
            doomed = self.trash / f"{path.name}-{os.urandom(4).hex()}"
            path.rename(doomed)
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("cannot remove %s: %s", path, exc)
            return
        _delete_in_background(doomed)

    def sweep(self, keep: set[Path]) -> list[Path]:
        """Remove every volume directory not in `keep` (left by a hyprd killed between a
        directory and its row), empty stack directories, and the trash; return what went."""
        gone = []
        for group in _subdirs(self.root):
            if group.name == TRASH:
                continue
            for path in _subdirs(group):
                if path not in keep:
                    self.discard(path)
                    gone.append(path)
            if group.name != STANDALONE and not any(group.iterdir()):
                group.rmdir()
        if self.trash.is_dir():
            _delete_in_background(*self.trash.iterdir())
        return gone

    @staticmethod
    def size(path: Path) -> int:
        """Bytes of the files under `path`, each hard-linked file once and symlinks not
        followed (Docker's count of what removing a volume gives back)."""
        seen: set[tuple[int, int]] = set()
        total = 0
        for top, _, files in os.walk(path):
            for name in files:
                try:
                    st = os.lstat(os.path.join(top, name))
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_size
        return total


def _subdirs(path: Path) -> list[Path]:
    """The real directories in `path` (no symlinks: a link is nothing hypr made)."""
    try:
        return [p for p in path.iterdir() if p.is_dir() and not p.is_symlink()]
    except FileNotFoundError:
        return []


def _delete_in_background(*paths: Path) -> None:
    if paths:
        threading.Thread(target=_delete, args=paths, name="volume-rm", daemon=True).start()


def _delete(*paths: Path) -> None:
    """Runs in a thread of its own: a failure is only logged (the next start tries again).
    rmtree never follows a symbolic link, so nothing a guest wrote can point it elsewhere."""
    for path in paths:
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot delete %s: %s", path, exc)
