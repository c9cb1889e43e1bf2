"""SQLite-backed IP address management.

The pool of a network is kept as a table of free ranges. Allocating takes the head of the
lowest range and releasing merges the address back with its neighbours; each is a couple of
indexed lookups, so an allocation costs the same in an empty /16 and in an almost full one.
The network, broadcast and gateway addresses are never in the pool. Callers run these
methods inside `Database.transaction()`; the primary key on `ip_allocations` is the last line
of defence against handing out one address twice.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import NoReturn

from hypr.errors import Conflict, Exhausted, InvalidArgument
from hypr.state.db import Database


class Ipam:
    """Allocate, reserve and release addresses of hypr networks."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create_pool(self, network_id: str, subnet: IPv4Network, gateway: IPv4Address) -> None:
        """Fill the pool of a new network with every host address except the gateway."""
        first, last = int(subnet.network_address) + 1, int(subnet.broadcast_address) - 1
        gw = int(gateway)
        ranges = [(first, gw - 1), (gw + 1, last)] if first <= gw <= last else [(first, last)]
        with self.db.transaction() as conn:
            conn.executemany(
                "INSERT INTO ip_free_ranges (network_id, first, last) VALUES (?, ?, ?)",
                [(network_id, lo, hi) for lo, hi in ranges if lo <= hi],
            )

    def allocate(self, network_id: str, owner: str) -> IPv4Address:
        """Hand out the lowest free address of the network."""
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT first, last FROM ip_free_ranges WHERE network_id = ? "
                "ORDER BY first LIMIT 1",
                (network_id,),
            ).fetchone()
            if row is None:
                raise Exhausted(f"address pool exhausted for network {self._name(network_id)}")
            self._take(network_id, row["first"], row["last"], row["first"], owner)
            return IPv4Address(row["first"])

    def reserve(self, network_id: str, address: IPv4Address, owner: str) -> IPv4Address:
        """Hand out one requested address, if it is in the pool and free."""
        value = int(address)
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT first, last FROM ip_free_ranges WHERE network_id = ? AND first <= ? "
                "ORDER BY first DESC LIMIT 1",
                (network_id, value),
            ).fetchone()
            if row is None or row["last"] < value:
                self._explain_unavailable(network_id, address)
            self._take(network_id, row["first"], row["last"], value, owner)
            return address

    def release(self, network_id: str, address: IPv4Address) -> None:
        """Return an address to the pool, merging it with adjacent free ranges."""
        value = int(address)
        with self.db.transaction() as conn:
            deleted = conn.execute(
                "DELETE FROM ip_allocations WHERE network_id = ? AND address = ?",
                (network_id, value),
            ).rowcount
            if not deleted:
                return
            below = conn.execute(
                "SELECT first FROM ip_free_ranges WHERE network_id = ? AND last = ?",
                (network_id, value - 1),
            ).fetchone()
            above = conn.execute(
                "SELECT last FROM ip_free_ranges WHERE network_id = ? AND first = ?",
                (network_id, value + 1),
            ).fetchone()
            first = below["first"] if below else value
            last = above["last"] if above else value
            if above:
                conn.execute(
                    "DELETE FROM ip_free_ranges WHERE network_id = ? AND first = ?",
                    (network_id, value + 1),
                )
            if below:
                conn.execute(
                    "UPDATE ip_free_ranges SET last = ? WHERE network_id = ? AND first = ?",
                    (last, network_id, first),
                )
            else:
                conn.execute(
                    "INSERT INTO ip_free_ranges (network_id, first, last) VALUES (?, ?, ?)",
                    (network_id, first, last),
                )

    def release_owner(self, owner: str) -> None:
        """Release every address held by `owner` (a VM NIC), on every network."""
        rows = self.db.conn.execute(
            "SELECT network_id, address FROM ip_allocations WHERE owner = ?", (owner,)
        ).fetchall()
        with self.db.transaction():
            for row in rows:
                self.release(row["network_id"], IPv4Address(row["address"]))

    def allocations(self, network_id: str) -> dict[IPv4Address, str]:
        """Addresses in use on a network, with their owners."""
        rows = self.db.conn.execute(
            "SELECT address, owner FROM ip_allocations WHERE network_id = ? ORDER BY address",
            (network_id,),
        ).fetchall()
        return {IPv4Address(row["address"]): row["owner"] for row in rows}

    def allocated_count(self, network_id: str) -> int:
        """How many addresses of the network are handed out (an index count, no rows read)."""
        row = self.db.conn.execute(
            "SELECT COUNT(*) FROM ip_allocations WHERE network_id = ?", (network_id,)
        ).fetchone()
        return int(row[0])

    def free_count(self, network_id: str) -> int:
        """How many addresses the pool can still give."""
        row = self.db.conn.execute(
            "SELECT COALESCE(SUM(last - first + 1), 0) FROM ip_free_ranges WHERE network_id = ?",
            (network_id,),
        ).fetchone()
        return int(row[0])

    def _take(self, network_id: str, first: int, last: int, value: int, owner: str) -> None:
        """Remove `value` from the free range [first, last] and record its owner."""
        conn = self.db.conn
        if value == first and first < last:  # the common case: shrink the range in place
            conn.execute(
                "UPDATE ip_free_ranges SET first = ? WHERE network_id = ? AND first = ?",
                (value + 1, network_id, first),
            )
        else:
            conn.execute(
                "DELETE FROM ip_free_ranges WHERE network_id = ? AND first = ?",
                (network_id, first),
            )
            for lo, hi in ((first, value - 1), (value + 1, last)):
                if lo <= hi:
                    conn.execute(
                        "INSERT INTO ip_free_ranges (network_id, first, last) VALUES (?, ?, ?)",
                        (network_id, lo, hi),
                    )
        conn.execute(
            "INSERT INTO ip_allocations (network_id, address, owner) VALUES (?, ?, ?)",
            (network_id, value, owner),
        )

    def _explain_unavailable(self, network_id: str, address: IPv4Address) -> NoReturn:
        row = self.db.conn.execute(
            "SELECT subnet, gateway, name FROM networks WHERE id = ?", (network_id,)
        ).fetchone()
        subnet, gateway = IPv4Network(row["subnet"]), IPv4Address(row["gateway"])
        name = row["name"]
        if address not in subnet:
            raise InvalidArgument(f"address {address} is not in subnet {subnet} of {name}")
        if address == gateway:
            raise InvalidArgument(f"address {address} is the gateway of network {name}")
        if address in (subnet.network_address, subnet.broadcast_address):
            raise InvalidArgument(f"address {address} is not a host address of {subnet}")
        raise Conflict(f"address {address} is already in use on network {name}")

    def _name(self, network_id: str) -> str:
        row = self.db.conn.execute(
            "SELECT name FROM networks WHERE id = ?", (network_id,)
        ).fetchone()
        return str(row["name"]) if row else network_id
