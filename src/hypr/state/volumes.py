"""The `volumes` table (migration 7): which volumes exist and where their files are.

The files themselves are the volume store's (hypr.volumes.store); a row names a directory,
and the keys (the name; the directory, for those hypr made) decide who wins a race.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field

from hypr.state.db import Database


@dataclass(frozen=True)
class VolumeRecord:
    """A volume as stored: Docker's volume plus the stack that owns it, if any."""

    name: str
    mountpoint: str  # absolute; the user's own directory for a `device=` volume
    created: str  # RFC 3339
    driver: str = "local"
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)  # `--opt`, as given
    stack: str | None = None  # the compose project it belongs to
    anonymous: bool = False  # made without a name (`-v /data`): prune and `rm -v` take it

    @property
    def bound(self) -> bool:
        """Its directory is a host directory the user named (`device=`): hypr never made
        it, so it never deletes it."""
        return "device" in self.options


class VolumeRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, vol: VolumeRecord) -> VolumeRecord | None:
        """Write a new volume and return None; or, if its name or (hypr-made) directory is
        taken, write nothing and return the volume that holds it."""
        try:
            with self.db.transaction() as conn:
                conn.execute(
                    "INSERT INTO volumes (name, driver, mountpoint, bound, created, labels, "
                    "options, stack, anonymous) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        vol.name,
                        vol.driver,
                        vol.mountpoint,
                        int(vol.bound),
                        vol.created,
                        json.dumps(vol.labels),
                        json.dumps(vol.options),
                        vol.stack,
                        int(vol.anonymous),
                    ),
                )
        except sqlite3.IntegrityError:
            holder = self.get(vol.name) or self._owner_of(vol.mountpoint)
            if holder is None:
                raise
            return holder
        return None

    def get(self, name: str) -> VolumeRecord | None:
        row = self.db.conn.execute("SELECT * FROM volumes WHERE name = ?", (name,)).fetchone()
        return _record(row) if row else None

    def all(self) -> list[VolumeRecord]:
        rows = self.db.conn.execute("SELECT * FROM volumes ORDER BY name").fetchall()
        return [_record(row) for row in rows]

    def remove(self, name: str) -> bool:
        with self.db.transaction() as conn:
            return conn.execute("DELETE FROM volumes WHERE name = ?", (name,)).rowcount > 0

    def _owner_of(self, mountpoint: str) -> VolumeRecord | None:
        row = self.db.conn.execute(
            "SELECT * FROM volumes WHERE mountpoint = ? AND bound = 0",
            (mountpoint,),
        ).fetchone()
        return _record(row) if row else None


def _record(row: sqlite3.Row) -> VolumeRecord:
    return VolumeRecord(
        name=row["name"],
        driver=row["driver"],
        mountpoint=row["mountpoint"],
        created=row["created"],
        labels=json.loads(row["labels"]),
        options=json.loads(row["options"]),
        stack=row["stack"],
        anonymous=bool(row["anonymous"]),
    )
