"""Docker's `/networks` on hypr's networks: list with filters, inspect, create, connect,
disconnect, remove, prune. Shapes and create rules are hypr's own API's (api/networks.py);
the daemon's network manager does the work.

Connect and disconnect change the NICs of a VM that is not running (a created one, which
is what docker-compose connects before it starts a container); a running microVM cannot
have a NIC hot-plugged, and that is answered 409 with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response

from hypr.api.deps import daemon_of
from hypr.api.docker.containers import container
from hypr.api.docker.endpoints import EndpointSettings
from hypr.api.docker.filters import (
    Filters,
    boolean,
    match_any,
    match_labels,
    parse_filters,
    prune_selector,
)
from hypr.api.models import DockerBody, DockerNetworkCreate
from hypr.api.networks import network_inspect, network_request
from hypr.daemon.service import Daemon
from hypr.errors import InvalidArgument
from hypr.state.networks import NetworkRecord

router = APIRouter(prefix="/networks", tags=["docker networks"])

LIST_FILTERS = ("dangling", "driver", "id", "label", "name", "scope", "type")
PRUNE_FILTERS = ("label", "label!", "until")


class ConnectRequest(DockerBody):
    Container: str
    EndpointConfig: EndpointSettings | None = None


class DisconnectRequest(DockerBody):
    Container: str
    Force: bool | None = False


@router.get("")
async def list_networks(request: Request, filters: str | None = None) -> list[dict[str, Any]]:
    daemon = daemon_of(request)
    wanted = parse_filters(filters, LIST_FILTERS)
    return [
        network_inspect(daemon, net, containers=False)
        for net in daemon.network_list()
        if _selected(daemon, net, wanted)
    ]


@router.get("/{ref}")
async def inspect_network(ref: str, request: Request) -> dict[str, Any]:
    daemon = daemon_of(request)
    return network_inspect(daemon, daemon.network(ref))


@router.post("/create", status_code=201)
async def create_network(body: DockerNetworkCreate, request: Request) -> dict[str, str]:
    net = await daemon_of(request).create_network(network_request(body))
    return {"Id": net.id, "Warning": ""}


@router.post("/{ref}/connect")
async def connect(ref: str, body: ConnectRequest, request: Request) -> Response:
    daemon = daemon_of(request)
    endpoint = body.EndpointConfig or EndpointSettings()
    ipam = endpoint.ipam
    if endpoint.Links:
        raise InvalidArgument("links are not supported: VMs find each other by name and alias")
    if ipam.IPv6Address or ipam.LinkLocalIPs:
        raise InvalidArgument("IPv6 and link-local addresses are not supported")
    net = daemon.network(ref)
    vm_id = container(daemon, body.Container).vm.id
    await daemon.connect_network(net.id, vm_id, endpoint.attachment(net.id))
    return Response(status_code=200)


@router.post("/{ref}/disconnect")
async def disconnect(ref: str, body: DisconnectRequest, request: Request) -> Response:
    daemon = daemon_of(request)
    net = daemon.network(ref)
    await daemon.disconnect_network(net.id, container(daemon, body.Container).vm.id)
    return Response(status_code=200)


@router.delete("/{ref}", status_code=204)
async def remove_network(ref: str, request: Request) -> None:
    await daemon_of(request).remove_network(ref, force=False)


@router.post("/prune")
async def prune_networks(request: Request, filters: str | None = None) -> dict[str, list[str]]:
    wanted = parse_filters(filters, PRUNE_FILTERS)
    removed = await daemon_of(request).prune_networks(prune_selector(wanted, _labels, _created))
    return {"NetworksDeleted": [net.name for net in removed]}


def _selected(daemon: Daemon, net: NetworkRecord, wanted: Filters) -> bool:
    """Docker's network list filters: values of one key are ORed, keys ANDed."""
    checks: dict[str, Callable[[list[str]], bool]] = {
        "name": lambda values: match_any(values, net.name),
        "id": lambda values: match_any(values, net.id),
        "driver": lambda values: net.driver in values,
        "label": lambda values: match_labels(values, net.labels),
        "scope": lambda values: "local" in values,
        "type": lambda values: _kind(values, net),
    }
    if not all(check(wanted[key]) for key, check in checks.items() if key in wanted):
        return False
    dangling = boolean(wanted, "dangling")
    return dangling is None or dangling == (not net.is_default and not daemon.endpoints(net.id))


def _kind(values: list[str], net: NetworkRecord) -> bool:
    """`type=builtin` is the default network (Docker's `bridge`), `type=custom` the others."""
    for kind in values:
        if kind not in ("custom", "builtin"):
            raise InvalidArgument(f"invalid filter 'type={kind}': use custom or builtin")
    return ("builtin" if net.is_default else "custom") in values


def _labels(net: NetworkRecord) -> dict[str, str]:
    return net.labels


def _created(net: NetworkRecord) -> str:
    return net.created
