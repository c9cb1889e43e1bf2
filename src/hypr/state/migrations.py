"""Numbered schema migrations; index i brings the schema from version i to i + 1.

Append only: a released migration is never edited, so every existing database can be
brought forward by replaying the tail of this list.
"""

MIGRATIONS: list[str] = [
    # 1: networks and IPAM.
    """
    CREATE TABLE networks (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        driver TEXT NOT NULL,
        subnet TEXT NOT NULL,
        gateway TEXT NOT NULL,
        bridge TEXT NOT NULL UNIQUE,
        internal INTEGER NOT NULL,
        labels TEXT NOT NULL,
        created TEXT NOT NULL,
        is_default INTEGER NOT NULL DEFAULT 0
    );
    -- Free address ranges per network, as absolute IPv4 integers, inclusive. Allocation
    -- takes the head of the lowest range, so its cost does not depend on how full the pool is.
    CREATE TABLE ip_free_ranges (
        network_id TEXT NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
        first INTEGER NOT NULL,
        last INTEGER NOT NULL,
        PRIMARY KEY (network_id, first)
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX ip_free_ranges_last ON ip_free_ranges (network_id, last);
    CREATE TABLE ip_allocations (
        network_id TEXT NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
        address INTEGER NOT NULL,
        owner TEXT NOT NULL,
        PRIMARY KEY (network_id, address)
    ) WITHOUT ROWID;
    CREATE INDEX ip_allocations_owner ON ip_allocations (owner);
    """,
    # 2: VMs and their NICs.
    """
    CREATE TABLE vms (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        image TEXT NOT NULL,
        spec TEXT NOT NULL,
        state TEXT NOT NULL,
        pid INTEGER,
        exit_code INTEGER,
        error TEXT,
        restarts INTEGER NOT NULL DEFAULT 0,
        created TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT
    );
    CREATE TABLE vm_nics (
        vm_id TEXT NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        network_id TEXT NOT NULL REFERENCES networks(id),
        mac TEXT NOT NULL UNIQUE,
        address INTEGER,
        tap TEXT UNIQUE,
        PRIMARY KEY (vm_id, idx)
    );
    CREATE INDEX vm_nics_network ON vm_nics (network_id);
    """,
]
