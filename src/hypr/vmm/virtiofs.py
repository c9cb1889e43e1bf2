"""Shared folders: one virtiofsd per VM, serving all of the VM's volumes and bind mounts.

virtiofsd serves one directory tree. Each VM gets a directory of its own in its runtime dir,
`shares/`, with one empty entry per shared folder; virtiofsd starts in a private mount
namespace (util-linux `unshare`) where each folder's source is bind-mounted onto its entry,
read-only where the mount is `ro`, and the tree itself is read-only. So a guest reaches
exactly the folders it was given, `ro` holds on the host whatever the guest does, and nothing
is mounted in hyprd's own namespace (a killed daemon leaves no mount behind). virtiofsd
confines itself to that tree (pivot_root in its own sandbox) and resolves no symlink on the
guest's behalf, so a link in a shared folder cannot lead out of it.

The C virtiofsd that QEMU 7.2 ships serves one connection and exits when its VM goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

from hypr.process import command_lines, wait_exit
from hypr.vmm.adapter import SharedDir

VIRTIOFSD = "/usr/lib/qemu/virtiofsd"
SOCKET = "virtiofs.sock"
SHARES_DIR = "shares"
LOG = "virtiofsd.log"
START_TIMEOUT = 10.0

# Runs in the new mount namespace: bind every source onto its entry, make the tree
# read-only, then become virtiofsd (same pid, so supervision sees virtiofsd itself).
_SETUP = """set -e
root=$1 sock=$2 bin=$3; shift 3
mount --bind "$root" "$root"
while [ $# -gt 0 ]; do
    mount --bind "$2" "$root/$3"
    if [ "$1" = ro ]; then mount -o remount,bind,ro "$root/$3"; fi
    shift 3
done
mount -o remount,bind,ro "$root"
exec "$bin" --socket-path="$sock" -o source="$root" -o cache=none -o log_level=warn \
    -o no_posix_lock -o no_flock
"""


def socket_path(runtime_dir: Path) -> Path:
    return runtime_dir / SOCKET


def command(runtime_dir: Path, shares: list[SharedDir], binary: str = VIRTIOFSD) -> list[str]:
    """The argv that serves `shares` for the VM whose runtime dir is `runtime_dir`."""
    argv = [
        "unshare", "--mount", "--propagation", "private", "--",
        "sh", "-c", _SETUP, "hypr-virtiofs",
        str(runtime_dir / SHARES_DIR), str(socket_path(runtime_dir)), binary,
    ]  # fmt: skip
    for share in shares:
        argv += ["ro" if share.read_only else "rw", str(share.source), share.name]
    return argv


def prepare(runtime_dir: Path, shares: list[SharedDir]) -> None:
    """Make the tree's entries: a directory for a directory, an empty file for a file."""
    root = runtime_dir / SHARES_DIR
    root.mkdir(mode=0o755, exist_ok=True)
    for share in shares:
        entry = root / share.name
        if share.source.is_dir():
            entry.mkdir(exist_ok=True)
        else:
            entry.touch(exist_ok=True)


class VirtiofsDaemons:
    """Starts, finds and stops the virtiofsd of each VM (also those of a previous hyprd)."""

    def __init__(self, binary: str = VIRTIOFSD) -> None:
        self.binary = binary
        self._children: dict[Path, int] = {}  # runtime dir -> pid, for ours to reap

    async def start(self, runtime_dir: Path, shares: list[SharedDir]) -> None:
        """Spawn virtiofsd and return once its socket is there for QEMU to connect to."""
        prepare(runtime_dir, shares)
        sock = socket_path(runtime_dir)
        sock.unlink(missing_ok=True)
        log = runtime_dir / LOG
        pid = os.posix_spawnp(  # noqa: ASYNC221 - returns once the child has exec'd
            "unshare",
            command(runtime_dir, shares, self.binary),
            dict(os.environ),
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
                (os.POSIX_SPAWN_DUP2, 1, 2),
            ],
            setsid=True,  # like QEMU, it must outlive a hyprd restart
        )
        self._children[runtime_dir] = pid
        deadline = time.monotonic() + START_TIMEOUT
        while not sock.exists():
            if self._reaped(pid) or time.monotonic() > deadline:
                await self.stop(runtime_dir)
                detail = log.read_text(errors="replace").strip() or "no output"
                raise RuntimeError(f"virtiofsd failed to start: {detail.splitlines()[-1]}")
            await asyncio.sleep(0.005)

    async def stop(self, runtime_dir: Path) -> None:
        """Kill the VM's virtiofsd (its VM is gone or never came) and wait until it is."""
        if not (runtime_dir / SHARES_DIR).exists():
            return  # the VM has no shared folders (prepare() makes this before the spawn)
        pids = self.find(runtime_dir.parent).get(runtime_dir.name, [])
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in pids:
            await wait_exit(pid)
        child = self._children.pop(runtime_dir, None)
        if child is not None:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(child, os.WNOHANG)  # noqa: ASYNC222 - exited: reap, never blocks

    async def stop_orphans(self, root: Path, keep: set[str]) -> None:
        """Stop every virtiofsd under `root` whose runtime dir is not in `keep` (its VM is
        not running: a hyprd killed between starting it and QEMU, say)."""
        for name in self.find(root):
            if name not in keep:
                await self.stop(root / name)

    @staticmethod
    def find(root: Path) -> dict[str, list[int]]:
        """The pids of each live virtiofsd under `root`, by runtime dir name (virtiofsd's
        sandbox forks, so there may be two)."""
        marker = f"--socket-path={root}/".encode()
        found: dict[str, list[int]] = {}
        for pid, argv in command_lines():
            for arg in argv:
                if arg.startswith(marker) and arg.endswith(f"/{SOCKET}".encode()):
                    name = arg[len(marker) :].split(b"/")[0].decode()
                    found.setdefault(name, []).append(pid)
        return found

    def _reaped(self, pid: int) -> bool:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return True
        return done != 0
