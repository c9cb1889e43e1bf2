"""The `vm_sems` table: cloud-init's per-instance semaphores, kept on the host because a
VM's root filesystem starts anew at every boot."""

from __future__ import annotations

from hypr.state.db import Database


class VmSems:
    """Which once-per-instance steps of a VM have run, and when."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def done(self, vm_id: str, name: str) -> str | None:
        row = self.db.conn.execute(
            "SELECT done FROM vm_sems WHERE vm_id = ? AND name = ?", (vm_id, name)
        ).fetchone()
        return str(row[0]) if row else None

    def mark(self, vm_id: str, name: str, when: str) -> None:
        """Record the step as run at `when`; the first record stays."""
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO vm_sems (vm_id, name, done) VALUES (?, ?, ?)",
                (vm_id, name, when),
            )
