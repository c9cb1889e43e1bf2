"""The IPAM tables: `ip_free_ranges` (a network's pool, as ranges of free addresses) and
`ip_allocations` (who holds which address). Addresses are stored as integers; the logic
that keeps the ranges merged lives in hypr.network.ipam."""

from __future__ import annotations

from collections.abc import Iterable

from hypr.state.db import Database

Range = tuple[int, int]  # first, last: both free, inclusive


class IpamRepository:
    """Reads and writes free ranges and allocations; callers group the writes of one
    operation in `Database.transaction()`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- free ranges ---------------------------------------------------------------------

    def add_ranges(self, network_id: str, ranges: Iterable[Range]) -> None:
        with self.db.transaction() as conn:
            conn.executemany(
                "INSERT INTO ip_free_ranges (network_id, first, last) VALUES (?, ?, ?)",
                [(network_id, first, last) for first, last in ranges],
            )

    def lowest_range(self, network_id: str) -> Range | None:
        row = self.db.conn.execute(
            "SELECT first, last FROM ip_free_ranges WHERE network_id = ? ORDER BY first LIMIT 1",
            (network_id,),
        ).fetchone()
        return (row["first"], row["last"]) if row else None

    def lowest_range_within(self, network_id: str, low: int, high: int) -> Range | None:
        """The lowest free range that has an address in [low, high]."""
        row = self.db.conn.execute(
            "SELECT first, last FROM ip_free_ranges WHERE network_id = ? AND last >= ? "
            "AND first <= ? ORDER BY first LIMIT 1",
            (network_id, low, high),
        ).fetchone()
        return (row["first"], row["last"]) if row else None

    def range_from_below(self, network_id: str, value: int) -> Range | None:
        """The range that starts at `value` or closest below it (it may end before it)."""
        row = self.db.conn.execute(
            "SELECT first, last FROM ip_free_ranges WHERE network_id = ? AND first <= ? "
            "ORDER BY first DESC LIMIT 1",
            (network_id, value),
        ).fetchone()
        return (row["first"], row["last"]) if row else None

    def range_ending_at(self, network_id: str, last: int) -> int | None:
        """The first address of the range that ends at `last`, if one does."""
        row = self.db.conn.execute(
            "SELECT first FROM ip_free_ranges WHERE network_id = ? AND last = ?",
            (network_id, last),
        ).fetchone()
        return int(row["first"]) if row else None

    def range_starting_at(self, network_id: str, first: int) -> int | None:
        """The last address of the range that starts at `first`, if one does."""
        row = self.db.conn.execute(
            "SELECT last FROM ip_free_ranges WHERE network_id = ? AND first = ?",
            (network_id, first),
        ).fetchone()
        return int(row["last"]) if row else None

    def move_range_start(self, network_id: str, first: int, new_first: int) -> None:
        self.db.conn.execute(
            "UPDATE ip_free_ranges SET first = ? WHERE network_id = ? AND first = ?",
            (new_first, network_id, first),
        )

    def move_range_end(self, network_id: str, first: int, new_last: int) -> None:
        self.db.conn.execute(
            "UPDATE ip_free_ranges SET last = ? WHERE network_id = ? AND first = ?",
            (new_last, network_id, first),
        )

    def delete_range(self, network_id: str, first: int) -> None:
        self.db.conn.execute(
            "DELETE FROM ip_free_ranges WHERE network_id = ? AND first = ?", (network_id, first)
        )

    def free_count(self, network_id: str) -> int:
        row = self.db.conn.execute(
            "SELECT COALESCE(SUM(last - first + 1), 0) FROM ip_free_ranges WHERE network_id = ?",
            (network_id,),
        ).fetchone()
        return int(row[0])

    # --- allocations ---------------------------------------------------------------------

    def add_allocation(self, network_id: str, address: int, owner: str) -> None:
        """The primary key refuses an address handed out twice."""
        self.db.conn.execute(
            "INSERT INTO ip_allocations (network_id, address, owner) VALUES (?, ?, ?)",
            (network_id, address, owner),
        )

    def delete_allocation(self, network_id: str, address: int) -> bool:
        """Whether the address was allocated."""
        deleted = self.db.conn.execute(
            "DELETE FROM ip_allocations WHERE network_id = ? AND address = ?",
            (network_id, address),
        ).rowcount
        return bool(deleted)

    def allocations(self, network_id: str) -> dict[int, str]:
        rows = self.db.conn.execute(
            "SELECT address, owner FROM ip_allocations WHERE network_id = ? ORDER BY address",
            (network_id,),
        )
        return {row["address"]: row["owner"] for row in rows}

    def held_by(self, owner: str) -> list[tuple[str, int]]:
        """(network id, address) of every allocation of `owner`."""
        rows = self.db.conn.execute(
            "SELECT network_id, address FROM ip_allocations WHERE owner = ?", (owner,)
        )
        return [(row["network_id"], row["address"]) for row in rows]

    def allocated_count(self, network_id: str) -> int:
        """An index count, no rows read."""
        row = self.db.conn.execute(
            "SELECT COUNT(*) FROM ip_allocations WHERE network_id = ?", (network_id,)
        ).fetchone()
        return int(row[0])
