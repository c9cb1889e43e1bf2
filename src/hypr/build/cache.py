"""The build cache under `$HYPR_DATA_DIR/cache`: one small JSON file per step, named by
the step's key. A key chains the parent's key, the instruction with its arguments
substituted, and for COPY/ADD the checksum of what it copies, so one changed input
invalidates exactly the steps from it on. The layer a step made lives in the image store;
an entry whose layer file has gone (an image prune took it) is a miss.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


def chain(parent: str, *parts: str) -> str:
    digest = hashlib.sha256(parent.encode())
    for part in parts:
        digest.update(b"\0" + part.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


@dataclass(frozen=True)
class CachedStep:
    created: str  # when the step first ran: history and image ids stay the same on reuse
    diff_id: str | None = None  # None: the step changed only the config
    tar_size: int = 0


class BuildCache:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(mode=0o700, parents=True, exist_ok=True)

    def get(self, key: str) -> CachedStep | None:
        try:
            return CachedStep(**json.loads((self.root / f"{key}.json").read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def put(self, key: str, step: CachedStep) -> None:
        path = self.root / f"{key}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(step)))
        os.replace(tmp, path)

    def layers(self) -> set[str]:
        """The diff_ids the cache refers to."""
        found = set()
        for entry in self.root.glob("*.json"):
            step = self.get(entry.stem)
            if step is not None and step.diff_id:
                found.add(step.diff_id)
        return found

    def clear(self) -> int:
        """Forget every step; returns how many there were."""
        count = 0
        for entry in self.root.iterdir():
            entry.unlink(missing_ok=True)
            count += 1
        return count
