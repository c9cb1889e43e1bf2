"""`hypr run` as the daemon receives it: one pydantic type, parsed straight from the API body
and built by compose, so the wire format and the daemon can never drift apart."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from hypr.daemon.images import PullPolicy
from hypr.network.manager import DEFAULT_NETWORK


class _Request(BaseModel):
    """snake_case keys like the rest of hypr's own API; unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NetworkAttachment(_Request):
    network: str
    ip: str | None = None
    mac: str | None = None
    aliases: list[str] = Field(default_factory=list)  # extra DNS names on this network


class MountRequest(_Request):
    """One `--mount` (and compose's long volume syntax), as Docker's HostConfig.Mounts."""

    type: Literal["volume", "bind", "tmpfs"] = "volume"
    source: str | None = None  # volume name (None: a new anonymous volume) or host path
    target: str
    read_only: bool = False
    nocopy: bool = False  # volume: do not fill an empty volume with the image's files
    tmpfs_size: int | None = None  # bytes
    tmpfs_mode: int | None = None


class HealthcheckRequest(_Request):
    """Docker's Healthcheck, in seconds: a test run through exec in the guest."""

    test: list[str] = Field(min_length=2)  # ["CMD", argv...] or ["CMD-SHELL", "command"]
    interval: float = Field(default=30.0, gt=0)
    timeout: float = Field(default=30.0, gt=0)
    retries: int = Field(default=3, ge=1)
    start_period: float = Field(default=0.0, ge=0)
    start_interval: float = Field(default=5.0, gt=0)


class RunRequest(_Request):
    image: str
    name: str | None = None
    command: list[str] | None = None
    entrypoint: list[str] | None = None
    env: list[str] = Field(default_factory=list)
    # None means the default network; [] is `--network none`: no NIC, no TAP, no address.
    networks: list[NetworkAttachment] | None = None
    vcpus: int = 1
    memory_mib: int = 256
    restart: str = "no"
    workdir: str | None = None
    user: str | None = None  # Docker's -u USER[:GROUP]; None: the image's User (or root)
    stop_signal: str | None = None  # a name or number; None: the image's, else SIGTERM
    dhcp: bool = False
    auto_remove: bool = False
    labels: dict[str, str] = Field(default_factory=dict)
    hostname: str | None = None  # defaults to the VM's name
    # `-p` specs: "[HOST_IP:]HOST_PORT:GUEST_PORT[/tcp|udp]", ports may be ranges.
    ports: list[str] = Field(default_factory=list)
    publish_all: bool = False  # -P: every port the image exposes, on free host ports
    pull: PullPolicy = "missing"  # when the daemon pulls the image first (`--pull`)
    ssh: bool = False  # forward a port of the SSH pool to guest port 22
    # `-v [SOURCE:]TARGET[:ro|rw|nocopy,...]` as Docker's HostConfig.Binds: SOURCE is a
    # volume name or an absolute host path; no SOURCE means a new anonymous volume.
    volumes: list[str] = Field(default_factory=list)
    mounts: list[MountRequest] = Field(default_factory=list)  # `--mount`
    tmpfs: dict[str, str] = Field(default_factory=dict)  # `--tmpfs TARGET[:OPTIONS]`
    start: bool = True  # False: create only (`hypr create`)
    healthcheck: HealthcheckRequest | None = None
    stop_timeout: int | None = Field(default=None, ge=0)  # seconds `stop` waits by default
    tty: bool = False  # the client asked for a terminal (the console is one either way)
    # Docker's --add-host "NAME:IP" ("host-gateway": the first NIC's gateway), in /etc/hosts.
    extra_hosts: list[str] = Field(default_factory=list)
    # A kernel file to boot instead of hypr's (Hyperfleet's kernel_image_path): under the
    # host's HYPR_MACHINE_ROOTS, and able to run hypr's initramfs (built for hypr's kernel).
    kernel: str | None = None
    expose: list[str] = Field(default_factory=list)  # Docker's --expose: "80", "53/udp"
    # cloud-init user data (`--user-data FILE`): a #cloud-config document or a #! script.
    user_data: str | None = None
    # Seconds without a proxied request, a connection to the VM or an exec after which it
    # is saved and stopped (`sleeping`), to wake at the next one (`--idle-timeout`).
    idle_timeout: float | None = Field(default=None, gt=0)

    @property
    def attachments(self) -> list[NetworkAttachment]:
        """The networks to join, with the default network filled in."""
        if self.networks is None:
            return [NetworkAttachment(network=DEFAULT_NETWORK)]
        return self.networks
