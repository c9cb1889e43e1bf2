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
    # 3: published ports (`-p`, `--ssh`), claimed with the VM and kept until it is removed.
    """
    CREATE TABLE port_forwards (
        vm_id TEXT NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
        protocol TEXT NOT NULL CHECK (protocol IN ('tcp', 'udp')),
        host_ip TEXT NOT NULL,  -- '0.0.0.0': every address of the host
        host_port INTEGER NOT NULL CHECK (host_port BETWEEN 1 AND 65535),
        guest_port INTEGER NOT NULL CHECK (guest_port BETWEEN 1 AND 65535),
        ssh INTEGER NOT NULL DEFAULT 0,  -- taken from the SSH pool by --ssh
        PRIMARY KEY (protocol, host_port, host_ip)
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX port_forwards_any ON port_forwards (protocol, host_port)
        WHERE host_ip = '0.0.0.0';
    CREATE INDEX port_forwards_vm ON port_forwards (vm_id);
    -- A port published on every address clashes with the same port on any one address.
    CREATE TRIGGER port_forwards_no_overlap BEFORE INSERT ON port_forwards
    WHEN EXISTS (
        SELECT 1 FROM port_forwards
        WHERE protocol = NEW.protocol AND host_port = NEW.host_port
          AND (host_ip = '0.0.0.0' OR NEW.host_ip = '0.0.0.0')
    )
    BEGIN
        SELECT RAISE(ABORT, 'host port already published');
    END;
    """,
    # 4: API keys for the TCP REST gateway; only a hash of each key is kept.
    """
    CREATE TABLE api_keys (
        name TEXT PRIMARY KEY,
        prefix TEXT NOT NULL,
        sha256 TEXT NOT NULL UNIQUE,
        created TEXT NOT NULL,
        last_used TEXT
    );
    """,
    # 5: compose operations in progress, so that a daemon killed half-way through `up` or
    # `down` finishes it at its next start; a row lives from the request to the last step.
    """
    CREATE TABLE stack_ops (
        project TEXT PRIMARY KEY,
        op TEXT NOT NULL CHECK (op IN ('up', 'down')),
        args TEXT NOT NULL,  -- JSON: what the request asked, enough to run it again
        step TEXT NOT NULL,  -- the last step reached, for the log
        started TEXT NOT NULL
    );
    """,
    # 6: pulled images. A layer is stored once (as a squashfs named by its diff_id) however
    # many images share it; an image is its config plus its layers in order; tags and repo
    # digests name images. A pull writes all of an image's rows in one transaction.
    """
    CREATE TABLE layers (
        diff_id TEXT PRIMARY KEY,  -- sha256 of the uncompressed tar
        blob_digest TEXT NOT NULL,  -- the compressed blob it was pulled as
        blob_size INTEGER NOT NULL,
        size INTEGER NOT NULL,  -- bytes of its squashfs file
        created TEXT NOT NULL
    );
    CREATE INDEX layers_blob ON layers (blob_digest);
    CREATE TABLE images (
        id TEXT PRIMARY KEY,  -- the config digest, sha256:<hex>
        config TEXT NOT NULL,  -- the image config JSON as pulled
        manifest_media_type TEXT NOT NULL,
        created TEXT NOT NULL,  -- the image config's `created`
        pulled TEXT NOT NULL,
        size INTEGER NOT NULL  -- the sum of its layers' squashfs sizes
    );
    CREATE TABLE image_layers (
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,  -- 0 is the bottom
        diff_id TEXT NOT NULL REFERENCES layers(diff_id),
        PRIMARY KEY (image_id, idx)
    ) WITHOUT ROWID;
    CREATE INDEX image_layers_diff_id ON image_layers (diff_id);
    CREATE TABLE image_tags (
        reference TEXT PRIMARY KEY,  -- canonical: docker.io/library/nginx:latest
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
    ) WITHOUT ROWID;
    CREATE INDEX image_tags_image ON image_tags (image_id);
    CREATE TABLE image_digests (
        reference TEXT PRIMARY KEY,  -- canonical: docker.io/library/nginx@sha256:...
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
    ) WITHOUT ROWID;
    CREATE INDEX image_digests_image ON image_digests (image_id);
    """,
    # 7: volumes. A volume is a host directory that VMs mount: hypr's own under
    # volumes/local/<name> or volumes/<stack>/<name>, or an existing directory bound by
    # `--opt type=none,o=bind,device=PATH` (`bound`). Two volumes never share a directory
    # hypr made (a stack named `local` could aim at one); several may bind one device
    # directory, as in Docker.
    """
    CREATE TABLE volumes (
        name TEXT PRIMARY KEY,
        driver TEXT NOT NULL,
        mountpoint TEXT NOT NULL,
        bound INTEGER NOT NULL DEFAULT 0,  -- 1: mountpoint is the user's, from `device=`
        created TEXT NOT NULL,
        labels TEXT NOT NULL,  -- JSON object
        options TEXT NOT NULL,  -- JSON object, as given (`--opt`)
        stack TEXT,  -- the compose project that owns it
        anonymous INTEGER NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX volumes_mountpoint ON volumes (mountpoint) WHERE bound = 0;
    CREATE INDEX volumes_stack ON volumes (stack);
    """,
    # 8: Docker's IPAM IPRange (the part of the subnet that addresses are handed out from
    # when none is asked for) and a network's driver options as given, for inspect.
    """
    ALTER TABLE networks ADD COLUMN ip_range TEXT;
    ALTER TABLE networks ADD COLUMN options TEXT NOT NULL DEFAULT '{}';
    """,
    # 9: cloud-init's per-instance semaphores: the VM's root is new at every boot, so the
    # host remembers that a VM's `runcmd` and user-data script ran (at its first boot).
    """
    CREATE TABLE vm_sems (
        vm_id TEXT NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        done TEXT NOT NULL,  -- RFC 3339
        PRIMARY KEY (vm_id, name)
    ) WITHOUT ROWID;
    """,
]
