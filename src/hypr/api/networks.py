"""/networks: Docker's network endpoints."""

from __future__ import annotations

from fastapi import APIRouter, Request

from hypr.api.deps import daemon_of
from hypr.api.models import (
    NetworkCreateRequest,
    NetworkCreateResponse,
    NetworkEndpoint,
    NetworkView,
    PruneResponse,
)
from hypr.daemon.service import Daemon
from hypr.errors import InvalidArgument
from hypr.network.manager import NetworkRequest
from hypr.state.networks import NetworkRecord

router = APIRouter(prefix="/networks", tags=["networks"])


def network_view(daemon: Daemon, net: NetworkRecord) -> NetworkView:
    return NetworkView(
        Name=net.name,
        Id=net.id,
        Created=net.created,
        Driver=net.driver,
        IPAM={
            "Driver": "default",
            "Options": {},
            "Config": [{"Subnet": str(net.subnet), "Gateway": str(net.gateway)}],
        },
        Internal=net.internal,
        Containers={
            ep.vm_id: NetworkEndpoint(
                Name=ep.vm_name,
                EndpointID=ep.endpoint_id,
                MacAddress=ep.mac,
                IPv4Address=f"{ep.address}/{net.subnet.prefixlen}" if ep.address else "",
            )
            for ep in daemon.endpoints(net.id)
        },
        Options={"com.docker.network.bridge.name": net.bridge},
        Labels=net.labels,
    )


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
    if body.EnableIPv6:
        raise InvalidArgument("IPv6 networks are not supported")
    pools = body.IPAM.Config if body.IPAM else []
    if len(pools) > 1:
        raise InvalidArgument("only one IPAM pool per network is supported")
    pool = pools[0] if pools else None
    if pool is not None and pool.IPRange is not None:
        raise InvalidArgument("IPAM IPRange is not supported")
    net = await daemon_of(request).create_network(
        NetworkRequest(
            name=body.Name,
            subnet=pool.Subnet if pool else None,
            gateway=pool.Gateway if pool else None,
            internal=body.Internal,
            driver=body.Driver,
            labels=body.Labels,
        )
    )
    return NetworkCreateResponse(Id=net.id)


@router.delete("/{ref}", status_code=204)
async def remove_network(ref: str, request: Request, force: bool = False) -> None:
    await daemon_of(request).remove_network(ref, force=force)


@router.post("/prune")
async def prune_networks(request: Request) -> PruneResponse:
    removed = await daemon_of(request).prune_networks()
    return PruneResponse(NetworksDeleted=[net.name for net in removed])
