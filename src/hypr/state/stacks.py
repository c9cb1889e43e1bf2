"""The `stack_ops` table: the compose operation each stack has in progress, if any.

A row is written before `up` or `down` changes anything and deleted when it ends, so a row
found at start-up is an operation the daemon died in the middle of.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hypr.state.db import Database


@dataclass(frozen=True)
class StackOp:
    project: str
    op: str  # up | down
    args: dict[str, Any]
    step: str


class StackOpRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def begin(self, project: str, op: str, args: dict[str, Any]) -> None:
        """Record the intent; an older row of the same stack (a resumed one) is replaced."""
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO stack_ops (project, op, args, step, started) "
                "VALUES (?, ?, ?, 'begun', ?)",
                (project, op, json.dumps(args), datetime.now(UTC).isoformat()),
            )

    def reached(self, project: str, step: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE stack_ops SET step = ? WHERE project = ?", (step, project))

    def finish(self, project: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM stack_ops WHERE project = ?", (project,))

    def pending(self) -> list[StackOp]:
        rows = self.db.conn.execute(
            "SELECT project, op, args, step FROM stack_ops ORDER BY started"
        ).fetchall()
        return [StackOp(r["project"], r["op"], json.loads(r["args"]), r["step"]) for r in rows]
