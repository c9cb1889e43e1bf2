"""`hypr dns`: the DNS servers, and how to point the host's resolver at `.hypr` names."""

from __future__ import annotations

from typing import Any

import click

from hypr.cli.context import api
from hypr.cli.output import print_json, print_table


@click.command()
@click.option("--format", help="json")
def dns(format: str | None) -> None:
    """Show the DNS servers and how to resolve .hypr names on the host."""
    if format not in (None, "json"):
        raise click.BadParameter(f"unsupported format {format!r} (use json)")
    data = api().get("/dns")
    if format == "json":
        print_json(data)
        return
    print_table(["NETWORK", "BRIDGE", "SERVER", "PORTS", "FORWARDS", "PID"], _rows(data["servers"]))
    if data["views"]:
        click.echo("\nViews, for VMs on several networks (their queries are redirected there):")
        print_table(
            ["NETWORKS", "BRIDGES", "SERVERS", "PORT", "FORWARDS", "PID"], _rows(data["views"])
        )
    domain = data["domain"]
    servers = data["servers"]
    if data["systemd_resolved"]:
        click.echo(f"\nhyprd has pointed systemd-resolved at these servers for .{domain} names:")
    else:
        click.echo(f"\nTo resolve .{domain} names on the host with systemd-resolved:")
    for server in servers:
        bridge, address = server["bridges"][0], server["addresses"][0]
        click.echo(f"  resolvectl dns {bridge} {address} && resolvectl domain {bridge} '~{domain}'")
    if servers:
        default = servers[0]
        click.echo(
            f"Without it, as the first nameserver of /etc/resolv.conf "
            f"(names on network {default['networks'][0]} only):"
        )
        click.echo(f"  nameserver {default['addresses'][0]}")


def _rows(servers: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            "+".join(s["networks"]),
            ",".join(s["bridges"]),
            ",".join(s["addresses"]),
            ",".join(map(str, s["ports"])),
            "yes" if s["forwards"] else "no",
            str(s["pid"]) if s["pid"] is not None else "-",
        ]
        for s in servers
    ]
