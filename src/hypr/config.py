"""Daemon and client settings, read from the environment once.

Every path the daemon writes is under `run_dir` or `data_dir`, so two daemons with different
directories (in different network namespaces) never see each other's state.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path

DEFAULT_RUN_DIR = Path("/run/hypr")
DEFAULT_DATA_DIR = Path("/var/lib/hypr")
# Each published port holds a socket while its VM runs: a range is bounded so that one
# request cannot take thousands of ports and hyprd's file descriptors with them.
DEFAULT_MAX_PORT_RANGE = 1000


def run_dir() -> Path:
    """The runtime directory that holds the API socket; the CLI needs only this."""
    return Path(os.environ.get("HYPR_RUN_DIR", str(DEFAULT_RUN_DIR)))


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, not {raw!r}") from exc


def machine_roots() -> tuple[Path, ...]:
    """HYPR_MACHINE_ROOTS, else $HYPR_DATA_DIR/machines and the assets dir (hypr's kernel)."""
    data_dir = os.environ.get("HYPR_DATA_DIR", str(DEFAULT_DATA_DIR))
    assets_dir = os.environ.get("HYPR_ASSETS_DIR", str(Path(sys.prefix) / "share" / "hypr"))
    roots = os.environ.get("HYPR_MACHINE_ROOTS", f"{data_dir}/machines:{assets_dir}")
    return tuple(Path(root) for root in roots.split(":") if root)


@dataclass(frozen=True)
class Settings:
    """What hyprd is configured with; shown by `hypr info`."""

    run_dir: Path
    data_dir: Path
    assets_dir: Path
    log_level: str
    accel: str
    default_subnet: IPv4Network
    api_addr: str  # the REST gateway (API keys required); "" turns it off
    metrics_addr: str  # Prometheus metrics; "" turns it off
    ssh_allowed_cidr: IPv4Network
    ssh_port_min: int
    ssh_port_max: int
    max_port_range: int = DEFAULT_MAX_PORT_RANGE  # most ports one `-p` range may publish
    # Registries spoken to in plain HTTP although not on loopback (HYPR_INSECURE_REGISTRIES).
    insecure_registries: tuple[str, ...] = ()
    # Where kernels and root filesystem files given by path may lie (HYPR_MACHINE_ROOTS,
    # colon-separated; relative paths are taken from the first).
    machine_roots: tuple[Path, ...] = ()
    default_image: str = "busybox"  # what Hatch's POST /vms runs (HYPR_DEFAULT_IMAGE)
    docker_addr: str = ""  # the Docker Engine API over TCP (API keys required); "": off
    # The build proxy that RUN steps without a network reach HTTP(S) through; "": none.
    build_proxy_addr: str = "127.0.0.1:41010"
    # The reverse proxy by subdomain (`<vm>.<domain>`, docs/serving.md); "": off. Names
    # under .localhost reach 127.0.0.1 in browsers and curl without any DNS set-up.
    proxy_addr: str = "127.0.0.1:41005"
    proxy_domain: str = "hypr.localhost"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)*", self.proxy_domain):
            raise ValueError(f"HYPR_PROXY_DOMAIN must be a DNS name, not {self.proxy_domain!r}")
        if self.max_port_range < 1:
            raise ValueError(f"HYPR_MAX_PORT_RANGE must be at least 1, not {self.max_port_range}")
        if not 1 <= self.ssh_port_min <= self.ssh_port_max <= 65535:
            raise ValueError(
                "HYPR_SSH_PORT_MIN..HYPR_SSH_PORT_MAX must be a port range within 1-65535, "
                f"not {self.ssh_port_min}-{self.ssh_port_max}"
            )

    @property
    def socket_path(self) -> Path:
        return self.run_dir / "hypr.sock"

    @property
    def docker_socket_path(self) -> Path:
        """The Docker Engine API (`DOCKER_HOST=unix://...`)."""
        return self.run_dir / "docker.sock"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "hyprd.pid"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "hypr.db"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def volumes_dir(self) -> Path:
        return self.data_dir / "volumes"

    @property
    def build_cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @classmethod
    def from_env(cls) -> Settings:
        accel = os.environ.get("HYPR_ACCEL", "auto")
        if accel not in ("auto", "kvm", "tcg"):
            raise ValueError(f"HYPR_ACCEL must be auto, kvm or tcg, not {accel!r}")
        return cls(
            run_dir=run_dir(),
            data_dir=Path(os.environ.get("HYPR_DATA_DIR", str(DEFAULT_DATA_DIR))),
            assets_dir=Path(
                os.environ.get("HYPR_ASSETS_DIR", str(Path(sys.prefix) / "share" / "hypr"))
            ),
            log_level=os.environ.get("HYPR_LOG", "info"),
            accel=accel,
            default_subnet=IPv4Network("10.88.0.0/16"),
            api_addr=os.environ.get("HYPR_API_ADDR", "127.0.0.1:41001"),
            metrics_addr=os.environ.get("HYPR_METRICS_ADDR", "127.0.0.1:41002"),
            docker_addr=os.environ.get("HYPR_DOCKER_ADDR", ""),
            build_proxy_addr=os.environ.get("HYPR_BUILD_PROXY_ADDR", "127.0.0.1:41010"),
            proxy_addr=os.environ.get("HYPR_PROXY_ADDR", "127.0.0.1:41005"),
            proxy_domain=os.environ.get("HYPR_PROXY_DOMAIN", "hypr.localhost").strip(".").lower(),
            ssh_allowed_cidr=IPv4Network(os.environ.get("HYPR_SSH_ALLOWED_CIDR", "0.0.0.0/0")),
            ssh_port_min=_env_int("HYPR_SSH_PORT_MIN", 2200),
            ssh_port_max=_env_int("HYPR_SSH_PORT_MAX", 2299),
            max_port_range=_env_int("HYPR_MAX_PORT_RANGE", DEFAULT_MAX_PORT_RANGE),
            machine_roots=machine_roots(),
            default_image=os.environ.get("HYPR_DEFAULT_IMAGE", "busybox"),
            insecure_registries=tuple(
                h.strip()
                for h in os.environ.get("HYPR_INSECURE_REGISTRIES", "").split(",")
                if h.strip()
            ),
        )
