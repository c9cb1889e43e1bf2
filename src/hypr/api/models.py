"""Request and response bodies of the REST API, in the Docker Engine API's shapes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class DockerModel(BaseModel):
    """Docker's API uses CamelCase keys; accept them as given and reject unknown ones."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")


class IpamPoolConfig(DockerModel):
    Subnet: str | None = None
    Gateway: str | None = None
    IPRange: str | None = None


class IpamConfig(DockerModel):
    Driver: str = "default"
    Config: list[IpamPoolConfig] = Field(default_factory=list)
    Options: dict[str, str] | None = None


class NetworkCreateRequest(DockerModel):
    Name: str
    Driver: str = "bridge"
    Internal: bool = False
    Attachable: bool | None = None
    CheckDuplicate: bool | None = None
    EnableIPv6: bool = False
    IPAM: IpamConfig | None = None
    Options: dict[str, str] | None = None
    Labels: dict[str, str] = Field(default_factory=dict)


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
