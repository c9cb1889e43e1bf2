"""The `hypr` command. It talks only to hyprd's API."""

from __future__ import annotations

import sys

import typer

from hypr import __version__
from hypr.cli import apikeys, compose, dns, networks, vms
from hypr.cli.client import ClientError
from hypr.cli.context import api
from hypr.errors import HyprError

app = typer.Typer(
    help="hypr: microVMs with Docker-compatible networking.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(networks.app, name="network")
vms.register(app)
app.add_typer(compose.app, name="compose")
app.add_typer(apikeys.app, name="apikey")
app.command("dns")(dns.dns)


@app.command()
def version() -> None:
    """Show the client's and the daemon's versions."""
    typer.echo(f"Client: hypr {__version__}")
    server = api().get("/version")
    typer.echo(
        f"Server: hyprd {server['Version']} (API {server['ApiVersion']}, "
        f"{server['Os']}/{server['Arch']}, kernel {server['KernelVersion']})"
    )


@app.command()
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
        typer.echo(f"{label}: {data[key]}")


def main() -> None:
    try:
        # Without standalone mode, click returns the code of a typer.Exit instead of exiting.
        result = app(standalone_mode=False)
        sys.exit(result if isinstance(result, int) else 0)
    except (ClientError, HyprError) as exc:
        typer.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # click usage errors and the like: one line, never a traceback
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        typer.echo(f"Error: {exc}", err=True)
        sys.exit(1)
