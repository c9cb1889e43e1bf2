"""Docker's EndpointSettings: what a container asks of one network, in a create's
NetworkingConfig and in a network connect alike, and the NIC that it asks for.

Each caller refuses, in its own words, what a VM's NIC cannot have (IPv6, legacy links)."""

from __future__ import annotations

from hypr.api.models import DockerBody
from hypr.daemon.requests import NetworkAttachment


class EndpointIpam(DockerBody):
    IPv4Address: str | None = None
    IPv6Address: str | None = None
    LinkLocalIPs: list[str] | None = None


class EndpointSettings(DockerBody):
    IPAMConfig: EndpointIpam | None = None
    Links: list[str] | None = None
    Aliases: list[str] | None = None
    MacAddress: str | None = None

    @property
    def ipam(self) -> EndpointIpam:
        return self.IPAMConfig or EndpointIpam()

    def attachment(self, network: str, mac: str | None = None) -> NetworkAttachment:
        """The NIC on `network`, with `mac` (the container's own) if the endpoint names none."""
        return NetworkAttachment(
            network=network,
            ip=self.ipam.IPv4Address or None,
            mac=self.MacAddress or mac,
            aliases=list(self.Aliases or []),
        )
