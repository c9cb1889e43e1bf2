"""The `api_keys` table: the REST gateway's bearer keys, stored as SHA-256 hashes."""

from __future__ import annotations

from dataclasses import dataclass

from hypr.state.db import Database


@dataclass(frozen=True)
class ApiKeyRecord:
    name: str
    prefix: str  # the first characters, to recognise a key without storing it
    created: str
    last_used: str | None


class ApiKeyRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, name: str, prefix: str, sha256: str, created: str) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO api_keys (name, prefix, sha256, created) VALUES (?, ?, ?, ?)",
                (name, prefix, sha256, created),
            )

    def remove(self, name: str) -> bool:
        with self.db.transaction() as conn:
            return conn.execute("DELETE FROM api_keys WHERE name = ?", (name,)).rowcount > 0

    def all(self) -> list[ApiKeyRecord]:
        rows = self.db.conn.execute(
            "SELECT name, prefix, created, last_used FROM api_keys ORDER BY created"
        ).fetchall()
        return [ApiKeyRecord(*row) for row in rows]

    def exists(self, name: str) -> bool:
        row = self.db.conn.execute("SELECT 1 FROM api_keys WHERE name = ?", (name,)).fetchone()
        return row is not None

    def touch(self, sha256: str, when: str) -> bool:
        """Record a use of the key with this hash; False if there is no such key."""
        with self.db.transaction() as conn:
            cursor = conn.execute(
                "UPDATE api_keys SET last_used = ? WHERE sha256 = ?", (when, sha256)
            )
            return cursor.rowcount > 0
