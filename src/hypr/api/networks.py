"""/networks: Docker's network endpoints, and the network shapes and create rules that the
Docker face (api/docker/networks.py) answers with too."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from hypr.api.deps import daemon_of
from hypr.api.models import (
    DockerNetworkCreate,
    IpamConfig,
    IpamPoolConfig,
    NetworkCreateRequest,
    NetworkCreateResponse,
    NetworkView,
    PruneResponse,
)
from hypr.daemon.service import Daemon
from hypr.errors import InvalidArgument
from hypr.network.manager import NetworkRequest
from hypr.state.networks import NetworkRecord

router = APIRouter(prefix="/networks", tags=["networks"])

BRIDGE_NAME = "com.docker.network.bridge.name"
# Docker's bridge options that hypr's bridges can honour, with the values they honour.
HONOURED_OPTIONS = {
    "com.docker.network.bridge.enable_icc": ("true",),
    "com.docker.network.bridge.enable_ip_masquerade": ("true",),
    "com.docker.network.driver.mtu": ("1500",),
    "com.docker.network.bridge.default_bridge": ("false",),
    "com.docker.network.bridge.host_binding_ipv4": ("0.0.0.0",),
}
RESERVED_NAMES = ("host", "none")  # Docker's predefined networks, which hypr has not


def network_inspect(daemon: Daemon, net: NetworkRecord, containers: bool = True) -> dict[str, Any]:
    """A network in Docker's shape; its `Containers` stay empty in lists, as Docker's do
    since API 1.28. `Options` are those given at create (the default network shows its
    bridge's name)."""
    pool = {"Subnet": str(net.subnet), "Gateway": str(net.gateway)}
    if net.ip_range is not None:
        pool["IPRange"] = str(net.ip_range)
    options = net.options
    if net.is_default:
        options = {"com.docker.network.bridge.default_bridge": "true", BRIDGE_NAME: net.bridge}
    return {
        "Name": net.name,
        "Id": net.id,
        "Created": net.created,
        "Scope": "local",
        "Driver": net.driver,
        "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": {}, "Config": [pool]},
        "Internal": net.internal,
        "Attachable": True,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": _endpoints(daemon, net) if containers else {},
        "Options": options,
        "Labels": net.labels,
    }


def network_view(daemon: Daemon, net: NetworkRecord) -> NetworkView:
    """hypr's own inspect: Docker's shape, with the bridge's name always among Options."""
    view = network_inspect(daemon, net)
    return NetworkView.model_validate({**view, "Options": {BRIDGE_NAME: net.bridge}})


def network_request(body: DockerNetworkCreate) -> NetworkRequest:
    """A create body as hypr's network manager takes it. What hypr's bridges cannot be
    (IPv6, swarm scopes, another IPAM driver, options they would ignore) answers 400."""
    if body.Name in RESERVED_NAMES:
        raise InvalidArgument(f"network name {body.Name} is reserved (Docker's predefined network)")
    if body.EnableIPv6:
        raise InvalidArgument("IPv6 networks are not supported")
    if body.Ingress or body.ConfigOnly or body.ConfigFrom:
        raise InvalidArgument("swarm networks (ingress, config-only, config-from) are refused")
    if body.Scope not in (None, "", "local"):
        raise InvalidArgument(f"network scope {body.Scope!r} is not supported: only local")
    pool = _pool(body.IPAM)
    options = _options(body.Options or {})
    return NetworkRequest(
        name=body.Name,
        subnet=pool.Subnet if pool else None,
        gateway=pool.Gateway if pool else None,
        ip_range=pool.IPRange if pool else None,
        internal=bool(body.Internal),
        driver=body.Driver or "bridge",
        labels=dict(body.Labels or {}),
        bridge=options.get(BRIDGE_NAME) or None,
        options=options,
    )


def _pool(ipam: IpamConfig | None) -> IpamPoolConfig | None:
    """The one address pool a hypr network has, if the body gives it."""
    if ipam is None:
        return None
    if ipam.Driver not in (None, "", "default"):
        raise InvalidArgument(f"IPAM driver {ipam.Driver!r} is not supported: only default")
    if ipam.Options:
        raise InvalidArgument("IPAM options are not supported")
    pools = ipam.Config or []
    if len(pools) > 1:
        raise InvalidArgument("only one IPAM pool per network is supported")
    if pools and pools[0].AuxiliaryAddresses:
        raise InvalidArgument("IPAM auxiliary addresses are not supported")
    return pools[0] if pools else None


def _options(options: dict[str, str]) -> dict[str, str]:
    """Docker's bridge options: the bridge's name, and the others only with the value
    hypr's bridges have; options outside Docker's namespace are kept, as Docker does."""
    for key, value in options.items():
        if key == BRIDGE_NAME or not key.startswith("com.docker.network."):
            continue
        honoured = HONOURED_OPTIONS.get(key)
        if honoured is None:
            raise InvalidArgument(f"network option {key} is not supported")
        if value.lower() not in honoured:
            raise InvalidArgument(f"network option {key}={value} is not supported ({honoured[0]})")
    return dict(options)


@router.get("")
async def list_networks(request: Request) -> list[NetworkView]:
    daemon = daemon_of(request)
    return [network_view(daemon, net) for net in daemon.network_list()]


@router.get("/{ref}")
async def inspect_network(ref: str, request: Request) -> NetworkView:
    daemon = daemon_of(request)
    return network_view(daemon, daemon.network(ref))


@router.post("/create", status_code=201)
async def create_network(body: NetworkCreateRequest, request: Request) -> NetworkCreateResponse:
    net = await daemon_of(request).create_network(network_request(body))
    return NetworkCreateResponse(Id=net.id)


@router.delete("/{ref}", status_code=204)
async def remove_network(ref: str, request: Request, force: bool = False) -> None:
    await daemon_of(request).remove_network(ref, force=force)


@router.post("/prune")
async def prune_networks(request: Request) -> PruneResponse:
    removed = await daemon_of(request).prune_networks()
    return PruneResponse(NetworksDeleted=[net.name for net in removed])


def _endpoints(daemon: Daemon, net: NetworkRecord) -> dict[str, dict[str, str]]:
    return {
        ep.vm_id: {
            "Name": ep.vm_name,
            "EndpointID": ep.endpoint_id,
            "MacAddress": ep.mac,
            "IPv4Address": f"{ep.address}/{net.subnet.prefixlen}" if ep.address else "",
            "IPv6Address": "",
        }
        for ep in daemon.endpoints(net.id)
    }
