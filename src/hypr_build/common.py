"""What every build step shares: running tools, input digests, and skip-if-fresh stamps."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class BuildError(Exception):
    """A step failed; the message is the one line shown to the user."""


def log(message: str) -> None:
    print(message, flush=True)


def run(argv: list[str], cwd: Path | None = None) -> str:
    """Run a tool; its last line of error output becomes the BuildError's message."""
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise BuildError(f"{argv[0]} not found (is its package installed?)") from exc
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise BuildError(f"{' '.join(argv)} failed: {detail[-1] if detail else proc.returncode}")
    return proc.stdout


def digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Stamps:
    """Input digests of finished steps, persisted so a rerun can skip them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.data: dict[str, str] = json.loads(path.read_text())
        except (OSError, ValueError):
            self.data = {}

    def fresh(self, step: str, digest: str, outputs: Iterable[Path]) -> bool:
        return self.data.get(step) == digest and all(p.exists() for p in outputs)

    def record(self, step: str, digest: str) -> None:
        self.data[step] = digest
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True))
        tmp.replace(self.path)


def step(
    stamps: Stamps, name: str, inputs: str, outputs: list[Path], work: Callable[[], str]
) -> None:
    """Run `work` (which returns a short summary) unless the step is fresh."""
    if stamps.fresh(name, inputs, outputs):
        log(f"{name}: up to date")
        return
    summary = work()
    stamps.record(name, inputs)
    log(f"{name}: {summary}")


def with_lists(what: str, fn: Callable[[], T]) -> T:
    """Run an apt query; if it fails (no or stale package lists), `apt-get update` once."""
    try:
        return fn()
    except BuildError:
        log(f"{what}: failed, running apt-get update and retrying")
        run(["apt-get", "update"])
        return fn()
