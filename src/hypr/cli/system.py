"""`hypr version` and `hypr info`."""

from __future__ import annotations

import click

from hypr import __version__
from hypr.cli.context import api


@click.command()
def version() -> None:
    """Show the client's and the daemon's versions."""
    click.echo(f"Client: hypr {__version__}")
    server = api().get("/version")
    click.echo(
        f"Server: hyprd {server['Version']} (API {server['ApiVersion']}, "
        f"{server['Os']}/{server['Arch']}, kernel {server['KernelVersion']})"
    )


@click.command()
def info() -> None:
    """Show the daemon's settings and counts."""
    data = api().get("/info")
    labels = {
        "ServerVersion": "Server Version",
        "RunDir": "Run Dir",
        "DataDir": "Data Dir",
        "AssetsDir": "Assets Dir",
        "Accelerator": "Accelerator",
        "DefaultSubnet": "Default Subnet",
        "Networks": "Networks",
        "VMs": "VMs",
        "VMsRunning": " Running",
        "SshPortRange": "SSH Port Pool",
        "SshAllowedCidr": "SSH Allowed CIDR",
    }
    for key, label in labels.items():
        click.echo(f"{label}: {data[key]}")
