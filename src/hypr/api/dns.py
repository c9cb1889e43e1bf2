"""/dns: the DNS servers of the networks, for `hypr dns` and troubleshooting."""

from __future__ import annotations

from fastapi import APIRouter, Request

from hypr.api.deps import daemon_of
from hypr.api.models import DnsServerView, DnsView
from hypr.network.dns_config import DOMAIN, HOST_PORT
from hypr.network.dns_views import ServerStatus

router = APIRouter(tags=["dns"])


def server_view(status: ServerStatus, ports: list[int]) -> DnsServerView:
    return DnsServerView(
        networks=[net.name for net in status.networks],
        bridges=[net.bridge for net in status.networks],
        addresses=[str(net.gateway) for net in status.networks],
        ports=ports,
        forwards=status.forwards,
        pid=status.pid,
    )


@router.get("/dns")
async def dns(request: Request) -> DnsView:
    service = daemon_of(request).dns
    servers, views = service.status()
    return DnsView(
        domain=DOMAIN,
        systemd_resolved=service.resolved,
        servers=[server_view(s, [s.port, HOST_PORT]) for s in servers],
        views=[server_view(v, [v.port]) for v in views],
    )
