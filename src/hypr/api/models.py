"""Request and response bodies of the REST API, in the Docker Engine API's shapes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class DockerModel(BaseModel):
    """Docker's API uses CamelCase keys; accept them as given and reject unknown ones."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")


class DockerBody(BaseModel):
    """A body of the Docker face: unknown keys are ignored, as Docker ignores them."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")


class IpamPoolConfig(DockerBody):
    Subnet: str | None = None
    Gateway: str | None = None
    IPRange: str | None = None
    AuxiliaryAddresses: dict[str, str] | None = None


class IpamConfig(DockerBody):
    Driver: str | None = "default"
    Config: list[IpamPoolConfig] | None = Field(default_factory=list)
    Options: dict[str, str] | None = None


class DockerNetworkCreate(DockerBody):
    """`POST /networks/create` as Docker's clients send it (null for what they leave out)."""

    Name: str
    Driver: str | None = "bridge"
    Scope: str | None = None
    Internal: bool | None = False
    Attachable: bool | None = None
    Ingress: bool | None = None
    ConfigOnly: bool | None = None
    ConfigFrom: dict[str, Any] | None = None
    CheckDuplicate: bool | None = None
    EnableIPv6: bool | None = False
    IPAM: IpamConfig | None = None
    Options: dict[str, str] | None = None
    Labels: dict[str, str] | None = Field(default_factory=dict)


class NetworkCreateRequest(DockerNetworkCreate):
    """hypr's own API takes the same body, and refuses unknown keys."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")


class NetworkCreateResponse(BaseModel):
    Id: str
    Warning: str = ""


class NetworkEndpoint(BaseModel):
    Name: str
    EndpointID: str
    MacAddress: str
    IPv4Address: str
    IPv6Address: str = ""


class NetworkView(BaseModel):
    """What `network inspect` prints for one network."""

    Name: str
    Id: str
    Created: str
    Scope: str = "local"
    Driver: str
    EnableIPv6: bool = False
    IPAM: dict[str, Any]
    Internal: bool
    Attachable: bool = True
    Containers: dict[str, NetworkEndpoint]
    Options: dict[str, str]
    Labels: dict[str, str]


class PruneResponse(BaseModel):
    NetworksDeleted: list[str]


class VersionView(BaseModel):
    Version: str
    ApiVersion: str
    Os: str
    Arch: str
    KernelVersion: str


class InfoView(BaseModel):
    ServerVersion: str
    RunDir: str
    DataDir: str
    AssetsDir: str
    Accelerator: str
    DefaultSubnet: str
    Networks: int
    VMs: int
    VMsRunning: int
    SshPortRange: str
    SshAllowedCidr: str


class HyprModel(BaseModel):
    """hypr's own endpoints (VMs, images) use snake_case, like Hyperfleet and Hatch."""

    model_config = ConfigDict(extra="forbid")


class PortView(BaseModel):
    protocol: str
    host_ip: str
    host_port: int
    guest_port: int


class NicView(BaseModel):
    network: str
    network_id: str
    ip: str | None
    prefix_len: int | None
    gateway: str | None
    mac: str
    tap: str | None


class MountView(BaseModel):
    type: str  # volume | bind | tmpfs
    source: str  # the volume's name, the host path, "" for a tmpfs
    target: str
    read_only: bool
    host_path: str  # where the files are on the host ("" for a tmpfs)


class VmView(BaseModel):
    id: str
    name: str
    image: str
    state: str
    pid: int | None
    exit_code: int | None
    error: str | None
    restarts: int
    created: str
    started_at: str | None
    finished_at: str | None
    command: list[str]
    env: list[str]
    workdir: str
    user: str | None
    stop_signal: str | None
    vcpus: int
    memory_mib: int
    restart: str
    auto_remove: bool
    dhcp: bool
    labels: dict[str, str]
    enable_network: bool
    guest_ip: str | None
    guest_mac: str | None
    tap_name: str | None
    networks: list[NicView]
    exposed_ports: list[str]  # the image's ExposedPorts, "80/tcp" (published by -P)
    ports: list[PortView]
    ssh_port: int | None
    log_path: str
    mounts: list[MountView]


class WaitResponse(BaseModel):
    exit_code: int | None


class ExecRequest(HyprModel):
    command: list[str] = Field(min_length=1)
    env: list[str] = Field(default_factory=list)
    workdir: str | None = None
    stdin: str = ""
    interactive: bool = False
    user: str | None = None  # USER[:GROUP]; None: the VM's own user


class ExecResponse(BaseModel):
    exit_code: int
    stdout: str
    stderr: str


class StackUpRequest(HyprModel):
    document: dict[str, Any]
    remove_orphans: bool = False
    # What relative bind paths and `~` are relative to, on the client's side: the compose
    # file's directory, and the home of its user. Without them such paths are refused.
    project_dir: str | None = None
    home: str | None = None
    # Which services (hypr.compose.select): active profiles, services named on the
    # command line (none: every enabled one), replicas by service (`--scale`), --no-deps.
    profiles: list[str] = Field(default_factory=list)
    services: list[str] = Field(default_factory=list)
    scale: dict[str, int] = Field(default_factory=dict)
    no_deps: bool = False


class StackRunRequest(StackUpRequest):
    """`compose run SERVICE`: a one-off VM of the service (after its dependencies)."""

    service: str
    command: list[str] | None = None  # None: the service's command
    entrypoint: list[str] | None = None
    env: list[str] = Field(default_factory=list)  # K=V, added to the service's
    rm: bool = False  # removed when it exits


class StackDownRequest(HyprModel):
    # The services of the compose file; None (no file at hand) removes every VM of the stack.
    services: list[str] | None = None
    remove_orphans: bool = False
    volumes: bool = False  # `down -v`: also the stack's volumes and the VMs' anonymous ones


class StackView(BaseModel):
    name: str
    status: str
    # Every VM of the stack (replicas by dependency order and number, one-off VMs last):
    # the VM's view with `service`, `number` (0 for a one-off VM) and `health`.
    vms: list[dict[str, Any]]
    networks: list[str]


class DnsServerView(BaseModel):
    """One DNS server: a network's own, or the view of several networks."""

    networks: list[str]
    bridges: list[str]
    addresses: list[str]  # where it listens (the gateways)
    ports: list[int]
    forwards: bool  # names it does not know go to the upstream resolvers
    pid: int | None  # None while it is not running


class DnsView(BaseModel):
    """`GET /dns`: the servers, and whether hyprd configured systemd-resolved itself."""

    domain: str
    systemd_resolved: bool
    servers: list[DnsServerView]
    views: list[DnsServerView]


class ApiKeyCreate(HyprModel):
    name: str


class ApiKeyCreated(BaseModel):
    name: str
    key: str  # shown once; only its hash is kept


class ApiKeyView(BaseModel):
    name: str
    prefix: str
    created: str
    last_used: str | None
