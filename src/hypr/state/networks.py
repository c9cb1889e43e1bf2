"""The `networks` table."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from hypr.state.db import Database


@dataclass(frozen=True)
class NetworkRecord:
    """A hypr network as stored; the kernel objects are derived from it."""

    id: str
    name: str
    driver: str
    subnet: IPv4Network
    gateway: IPv4Address
    bridge: str
    internal: bool
    created: str
    labels: dict[str, str] = field(default_factory=dict)
    is_default: bool = False
    # Addresses are handed out from here when none is asked for (Docker's IPRange).
    ip_range: IPv4Network | None = None
    options: dict[str, str] = field(default_factory=dict)  # driver options, as given

    @property
    def short_id(self) -> str:
        return self.id[:12]


class NetworkRepository:
    """Reads and writes network rows."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, net: NetworkRecord) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO networks (id, name, driver, subnet, gateway, bridge, internal, "
                "labels, created, is_default, ip_range, options) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    net.id,
                    net.name,
                    net.driver,
                    str(net.subnet),
                    str(net.gateway),
                    net.bridge,
                    int(net.internal),
                    json.dumps(net.labels),
                    net.created,
                    int(net.is_default),
                    str(net.ip_range) if net.ip_range else None,
                    json.dumps(net.options),
                ),
            )

    def remove(self, network_id: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM networks WHERE id = ?", (network_id,))

    def all(self) -> list[NetworkRecord]:
        rows = self.db.conn.execute("SELECT * FROM networks ORDER BY created, name").fetchall()
        return [_record(row) for row in rows]

    def find(self, ref: str) -> NetworkRecord | None:
        """Look a network up as Docker does: exact name, full id, then unique id prefix."""
        conn = self.db.conn
        row = conn.execute("SELECT * FROM networks WHERE name = ?", (ref,)).fetchone()
        if row is None:
            row = conn.execute("SELECT * FROM networks WHERE id = ?", (ref,)).fetchone()
        if row is None and ref and all(c in "0123456789abcdef" for c in ref):
            rows = conn.execute(
                "SELECT * FROM networks WHERE id LIKE ? LIMIT 2", (ref + "%",)
            ).fetchall()
            row = rows[0] if len(rows) == 1 else None
        return _record(row) if row is not None else None

    def bridges(self) -> set[str]:
        return {row[0] for row in self.db.conn.execute("SELECT bridge FROM networks")}


def _record(r: sqlite3.Row) -> NetworkRecord:
    return NetworkRecord(
        id=r["id"],
        name=r["name"],
        driver=r["driver"],
        subnet=IPv4Network(r["subnet"]),
        gateway=IPv4Address(r["gateway"]),
        bridge=r["bridge"],
        internal=bool(r["internal"]),
        created=r["created"],
        labels=json.loads(r["labels"]),
        is_default=bool(r["is_default"]),
        ip_range=IPv4Network(r["ip_range"]) if r["ip_range"] else None,
        options=json.loads(r["options"]),
    )
