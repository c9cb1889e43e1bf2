"""The SQLite store: one connection, owned by the daemon's event-loop thread.

Every mutation runs inside `transaction()`, so an operation that fails half-way leaves no
rows behind. Schema changes are numbered migrations applied on start (PRAGMA user_version).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hypr.state.migrations import MIGRATIONS


class Database:
    """A thin wrapper that adds nested transactions and migrations to sqlite3."""

    def __init__(self, path: Path | str) -> None:
        self.path = path
        self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA foreign_keys = ON")
        if str(path) != ":memory:":
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = NORMAL")
            _make_private(Path(path))
        self._depth = 0

    def migrate(self) -> int:
        """Apply the migrations newer than the file's schema version; return the version."""
        version: int = self.conn.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            with self.transaction():
                for statement in _split_sql(script):
                    self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {number}")
        return len(MIGRATIONS)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run a block atomically; nested blocks become savepoints."""
        if self._depth == 0:
            self.conn.execute("BEGIN IMMEDIATE")
        else:
            self.conn.execute(f"SAVEPOINT sp{self._depth}")
        self._depth += 1
        try:
            yield self.conn
        except BaseException:
            self._depth -= 1
            if self._depth == 0:
                self.conn.execute("ROLLBACK")
            else:
                self.conn.execute(f"ROLLBACK TO sp{self._depth}")
                self.conn.execute(f"RELEASE sp{self._depth}")
            raise
        self._depth -= 1
        if self._depth == 0:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute(f"RELEASE sp{self._depth}")

    def close(self) -> None:
        self.conn.close()


def _make_private(path: Path) -> None:
    """The database holds VM env values (secrets): it, its -wal and -shm are 0600 whatever
    the umask of whoever created them (SQLite creates -wal and -shm with the main file's
    mode)."""
    for suffix in ("", "-wal", "-shm"):
        file = path.with_name(path.name + suffix)
        if file.exists():
            file.chmod(0o600)


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements. A semicolon ends one only where SQLite says the
    statement is complete, so trigger bodies and comments may hold semicolons."""
    statements, pending = [], ""
    for part in script.split(";"):
        pending += part + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                statements.append(pending.strip())
            pending = ""
    return statements
