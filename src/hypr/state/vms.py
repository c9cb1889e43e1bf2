"""The `vms` and `vm_nics` tables."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Address
from typing import Any, Literal

from hypr.state.db import Database

# Columns `VmRepository.update` may set: the VM's lifecycle, and the image it names (an id
# once `rmi -f` took its tag); identity never changes, the spec only through `set_spec`.
UPDATABLE_COLUMNS = frozenset(
    {"state", "pid", "exit_code", "error", "restarts", "started_at", "finished_at", "image"}
)


MountType = Literal["volume", "bind", "tmpfs"]


@dataclass(frozen=True)
class MountSpec:
    """One filesystem mounted into the guest, as validated at create (Docker's Mount)."""

    type: MountType
    source: str  # a volume's name, an absolute host path (resolved), "" for tmpfs
    target: str  # absolute, normalised path in the guest
    read_only: bool = False
    # A volume that is empty when it is mounted is first filled with the image's files at
    # `target` (Docker's copy-up); `volume.nocopy` turns it off. Binds are never filled.
    copy_up: bool = False
    anonymous: bool = False  # a volume made for this VM alone: removed with it (rm -v, --rm)
    tmpfs_size: int = 0  # bytes; 0: the guest kernel's default (half of the VM's RAM)
    tmpfs_mode: int = 0o1777


@dataclass(frozen=True)
class HealthcheckSpec:
    """A healthcheck run through exec in the guest, as Docker runs one in the container;
    times in seconds."""

    test: list[str]  # ["CMD", argv...] or ["CMD-SHELL", "command"]
    interval: float = 30.0
    timeout: float = 30.0
    retries: int = 3
    start_period: float = 0.0
    start_interval: float = 5.0


@dataclass(frozen=True)
class VmSpec:
    """What the user asked for at `hypr run`; kept so that `hypr start` can boot it again."""

    argv: list[str]
    env: list[str] = field(default_factory=list)
    workdir: str = "/"
    vcpus: int = 1
    memory_mib: int = 256
    restart: str = "no"
    max_restarts: int = 0
    dhcp: bool = False
    auto_remove: bool = False
    # The --ip asked for each NIC (None: any), to claim the same one again after a release.
    requested_ips: list[str | None] = field(default_factory=list)
    # Extra DNS names of each NIC (compose service names and aliases).
    aliases: list[list[str]] = field(default_factory=list)
    hostname: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    # Defaults None so rows written before these existed still load.
    user: str | None = None
    stop_signal: str | None = None
    exposed_ports: list[str] = field(default_factory=list)  # the image's, "80/tcp"
    mounts: list[MountSpec] = field(default_factory=list)  # in the order they are mounted
    healthcheck: HealthcheckSpec | None = None
    stop_timeout: int | None = None  # seconds `stop` waits by default (Docker's StopTimeout)
    # The workload's output is the console, a terminal either way: `tty` records that the
    # client asked for one (Docker's Tty), so that logs and attach send it unframed.
    tty: bool = False
    extra_hosts: list[str] = field(default_factory=list)  # "NAME:IP" lines for /etc/hosts
    # cloud-init user data as given (checked at create), applied at every boot.
    user_data: str | None = None
    idle_timeout: float | None = None  # seconds; None: never put to sleep
    kernel: str | None = None  # a kernel file of the host's; None: hypr's own

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> VmSpec:
        fields = json.loads(text)
        fields["mounts"] = [MountSpec(**m) for m in fields.get("mounts", [])]
        if fields.get("healthcheck") is not None:
            fields["healthcheck"] = HealthcheckSpec(**fields["healthcheck"])
        return cls(**fields)

    def volume_names(self) -> set[str]:
        """The volumes this VM mounts (a volume in use cannot be removed)."""
        return {m.source for m in self.mounts if m.type == "volume"}


@dataclass(frozen=True)
class NicRecord:
    vm_id: str
    idx: int
    network_id: str
    mac: str
    address: IPv4Address | None
    tap: str | None


@dataclass(frozen=True)
class VmRecord:
    id: str
    name: str
    image: str
    spec: VmSpec
    state: str  # created | running | stopping | exited
    created: str
    pid: int | None = None
    exit_code: int | None = None
    error: str | None = None
    restarts: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    nics: tuple[NicRecord, ...] = ()

    @property
    def short_id(self) -> str:
        return self.id[:12]


@dataclass(frozen=True)
class PublishRequest:
    """What a new VM asks to publish (`-p` specs and `--ssh`): what the services that
    follow VMs get at create, instead of the caller's whole request."""

    ports: tuple[str, ...] = ()
    ssh: bool = False
    publish_all: bool = False  # -P: every exposed port on a free host port


def endpoint_id(vm_id: str, idx: int) -> str:
    """A NIC's Docker endpoint id: 64 hex digits, the VM's id then the NIC's index."""
    return f"{vm_id[:56]}{idx:08x}"


@dataclass(frozen=True)
class Endpoint:
    """A VM's attachment to a network, as `network inspect` lists it."""

    vm_id: str
    vm_name: str
    endpoint_id: str
    mac: str
    address: IPv4Address | None


class VmRepository:
    """Reads and writes VM rows; NIC rows are written with their VM."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, vm: VmRecord) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO vms (id, name, image, spec, state, created) VALUES (?, ?, ?, ?, ?, ?)",
                (vm.id, vm.name, vm.image, vm.spec.to_json(), vm.state, vm.created),
            )
            for nic in vm.nics:
                self.add_nic(nic)

    def add_nic(self, nic: NicRecord) -> None:
        self.db.conn.execute(
            "INSERT INTO vm_nics (vm_id, idx, network_id, mac, address, tap) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                nic.vm_id,
                nic.idx,
                nic.network_id,
                nic.mac,
                int(nic.address) if nic.address else None,
                nic.tap,
            ),
        )

    def remove(self, vm_id: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM vms WHERE id = ?", (vm_id,))

    def remove_nic(self, vm_id: str, idx: int) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM vm_nics WHERE vm_id = ? AND idx = ?", (vm_id, idx))

    def renumber_nics_after(self, vm_id: str, idx: int) -> None:
        """Close the gap a removed NIC left: the NICs after `idx` move down by one, so a
        VM's NICs stay numbered 0..n-1 as its spec's per-NIC lists are."""
        with self.db.transaction() as conn:
            rows = conn.execute(
                "SELECT idx FROM vm_nics WHERE vm_id = ? AND idx > ? ORDER BY idx", (vm_id, idx)
            ).fetchall()
            for row in rows:
                conn.execute(
                    "UPDATE vm_nics SET idx = ? WHERE vm_id = ? AND idx = ?",
                    (row["idx"] - 1, vm_id, row["idx"]),
                )

    def rename(self, vm_id: str, name: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE vms SET name = ? WHERE id = ?", (name, vm_id))

    def set_spec(self, vm_id: str, spec: VmSpec) -> None:
        """Only for a VM that is not running, whose network attachments change (Docker's
        network connect and disconnect): the spec holds each NIC's aliases and --ip."""
        with self.db.transaction() as conn:
            conn.execute("UPDATE vms SET spec = ? WHERE id = ?", (spec.to_json(), vm_id))

    def update(self, vm_id: str, **fields: Any) -> None:
        """Set columns of one VM; only the lifecycle columns in UPDATABLE_COLUMNS, so the
        statement is built from code constants and the values are all bound parameters."""
        unknown = fields.keys() - UPDATABLE_COLUMNS
        if unknown:
            raise ValueError(f"not an updatable VM column: {', '.join(sorted(unknown))}")
        columns = ", ".join(f"{name} = ?" for name in fields)
        sql = f"UPDATE vms SET {columns} WHERE id = ?"  # noqa: S608 (names whitelisted above)
        with self.db.transaction() as conn:
            conn.execute(sql, (*fields.values(), vm_id))

    def set_tap(self, vm_id: str, idx: int, tap: str | None) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE vm_nics SET tap = ? WHERE vm_id = ? AND idx = ?", (tap, vm_id, idx)
            )

    def set_address(self, vm_id: str, idx: int, address: IPv4Address | None) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE vm_nics SET address = ? WHERE vm_id = ? AND idx = ?",
                (int(address) if address else None, vm_id, idx),
            )

    def get(self, vm_id: str) -> VmRecord | None:
        row = self.db.conn.execute("SELECT * FROM vms WHERE id = ?", (vm_id,)).fetchone()
        return self._record(row) if row else None

    def find(self, ref: str) -> VmRecord | None:
        """Exact name, full id, then a unique id prefix, as Docker resolves references."""
        conn = self.db.conn
        row = conn.execute("SELECT * FROM vms WHERE name = ?", (ref,)).fetchone()
        if row is None:
            row = conn.execute("SELECT * FROM vms WHERE id = ?", (ref,)).fetchone()
        if row is None and ref and all(c in "0123456789abcdef" for c in ref):
            rows = conn.execute("SELECT * FROM vms WHERE id LIKE ? LIMIT 2", (ref + "%",))
            found = rows.fetchall()
            row = found[0] if len(found) == 1 else None
        return self._record(row) if row else None

    def all(self) -> list[VmRecord]:
        """Every VM with its NICs, in two queries whatever the number of VMs."""
        rows = self.db.conn.execute("SELECT * FROM vms ORDER BY created DESC").fetchall()
        nics: dict[str, list[NicRecord]] = {}
        for n in self.db.conn.execute("SELECT * FROM vm_nics ORDER BY vm_id, idx"):
            nics.setdefault(n["vm_id"], []).append(_nic(n))
        return [self._record(row, tuple(nics.get(row["id"], ()))) for row in rows]

    def name_taken(self, name: str) -> bool:
        return (
            self.db.conn.execute("SELECT 1 FROM vms WHERE name = ?", (name,)).fetchone() is not None
        )

    def name_in_other_case(self, name: str, vm_id: str) -> str | None:
        """The name of another VM that is `name` but for case, if there is one."""
        row = self.db.conn.execute(
            "SELECT name FROM vms WHERE name = ? COLLATE NOCASE AND id != ?", (name, vm_id)
        ).fetchone()
        return str(row[0]) if row else None

    def ids(self) -> set[str]:
        return {row[0] for row in self.db.conn.execute("SELECT id FROM vms")}

    def mac_taken(self, mac: str) -> bool:
        row = self.db.conn.execute("SELECT 1 FROM vm_nics WHERE mac = ?", (mac,)).fetchone()
        return row is not None

    def taps_in_use(self) -> set[str]:
        rows = self.db.conn.execute("SELECT tap FROM vm_nics WHERE tap IS NOT NULL")
        return {row[0] for row in rows}

    def endpoints(self, network_id: str) -> list[Endpoint]:
        rows = self.db.conn.execute(
            "SELECT v.id, v.name, n.idx, n.mac, n.address FROM vm_nics n "
            "JOIN vms v ON v.id = n.vm_id WHERE n.network_id = ? ORDER BY v.name",
            (network_id,),
        ).fetchall()
        return [
            Endpoint(
                vm_id=row["id"],
                vm_name=row["name"],
                endpoint_id=endpoint_id(row["id"], row["idx"]),
                mac=row["mac"],
                address=IPv4Address(row["address"]) if row["address"] is not None else None,
            )
            for row in rows
        ]

    def counts(self) -> tuple[int, int]:
        """(all VMs, running VMs)."""
        row = self.db.conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(state = 'running'), 0) FROM vms"
        ).fetchone()
        return int(row[0]), int(row[1])

    def _record(self, row: sqlite3.Row, nics: tuple[NicRecord, ...] | None = None) -> VmRecord:
        if nics is None:
            nics = tuple(
                _nic(n)
                for n in self.db.conn.execute(
                    "SELECT * FROM vm_nics WHERE vm_id = ? ORDER BY idx", (row["id"],)
                )
            )
        return VmRecord(
            id=row["id"],
            name=row["name"],
            image=row["image"],
            spec=VmSpec.from_json(row["spec"]),
            state=row["state"],
            created=row["created"],
            pid=row["pid"],
            exit_code=row["exit_code"],
            error=row["error"],
            restarts=row["restarts"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            nics=nics,
        )


def _nic(row: sqlite3.Row) -> NicRecord:
    return NicRecord(
        vm_id=row["vm_id"],
        idx=row["idx"],
        network_id=row["network_id"],
        mac=row["mac"],
        address=IPv4Address(row["address"]) if row["address"] is not None else None,
        tap=row["tap"],
    )
