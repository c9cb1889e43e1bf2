"""The `port_forwards` table: which VM published which host port.

The schema makes a double claim impossible (one row per protocol, host port and address, and
a trigger against an any-address port clashing with one address); the queries here let the
caller refuse with a message that names the holder before the constraint has to.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from ipaddress import IPv4Address

from hypr.state.db import Database

ANY_ADDRESS = IPv4Address("0.0.0.0")


@dataclass(frozen=True)
class PortForward:
    """One published port: `host_ip:host_port/protocol` leads to `guest_port` of a VM."""

    protocol: str
    host_ip: IPv4Address  # ANY_ADDRESS: every address of the host
    host_port: int
    guest_port: int
    ssh: bool = False  # handed out from the SSH pool by --ssh

    @property
    def host(self) -> str:
        """How errors name the host side, e.g. `0.0.0.0:8080/tcp`."""
        return f"{self.host_ip}:{self.host_port}/{self.protocol}"

    def __str__(self) -> str:
        """Docker's notation, as `ps` shows it: `0.0.0.0:8080->80/tcp`."""
        return f"{self.host_ip}:{self.host_port}->{self.guest_port}/{self.protocol}"


class PortForwardRepository:
    """Reads and writes the forwards of VMs; rows go with their VM (ON DELETE CASCADE)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, vm_id: str, fwd: PortForward) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO port_forwards (vm_id, protocol, host_ip, host_port, guest_port, ssh) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (vm_id, fwd.protocol, str(fwd.host_ip), fwd.host_port, fwd.guest_port, fwd.ssh),
            )

    def for_vm(self, vm_id: str) -> list[PortForward]:
        rows = self.db.conn.execute(
            "SELECT * FROM port_forwards WHERE vm_id = ? ORDER BY host_port, protocol, host_ip",
            (vm_id,),
        )
        return [_forward(row) for row in rows]

    def by_vm(self) -> dict[str, list[PortForward]]:
        """Every VM's forwards (in for_vm's order) in one query, for a list of many VMs."""
        rows = self.db.conn.execute(
            "SELECT * FROM port_forwards ORDER BY vm_id, host_port, protocol, host_ip"
        )
        found: dict[str, list[PortForward]] = {}
        for row in rows:
            found.setdefault(row["vm_id"], []).append(_forward(row))
        return found

    def holder(self, fwd: PortForward) -> str | None:
        """The name of the VM whose forward clashes with `fwd`, if any."""
        row = self.db.conn.execute(
            "SELECT v.name FROM port_forwards f JOIN vms v ON v.id = f.vm_id "
            "WHERE f.protocol = :protocol AND f.host_port = :port "
            "AND (:ip = :any OR f.host_ip IN (:ip, :any)) LIMIT 1",
            {
                "protocol": fwd.protocol,
                "port": fwd.host_port,
                "ip": str(fwd.host_ip),
                "any": str(ANY_ADDRESS),
            },
        ).fetchone()
        return str(row[0]) if row else None

    def ports_in_use(self, protocol: str, first: int, last: int) -> set[int]:
        """Host ports in [first, last] that some forward uses, on whatever address."""
        rows = self.db.conn.execute(
            "SELECT host_port FROM port_forwards WHERE protocol = ? AND host_port BETWEEN ? AND ?",
            (protocol, first, last),
        )
        return {row[0] for row in rows}


def _forward(row: sqlite3.Row) -> PortForward:
    return PortForward(
        protocol=row["protocol"],
        host_ip=IPv4Address(row["host_ip"]),
        host_port=row["host_port"],
        guest_port=row["guest_port"],
        ssh=bool(row["ssh"]),
    )
