"""`hypr network ...`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from hypr.cli.client import ClientError
from hypr.cli.context import api
from hypr.cli.output import print_json, print_json_lines, print_table

app = typer.Typer(help="Manage networks.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="network")


def parse_labels(labels: list[str]) -> dict[str, str]:
    result = {}
    for label in labels:
        key, sep, value = label.partition("=")
        if not key:
            raise typer.BadParameter(f"invalid label {label!r}: expected key=value")
        result[key] = value if sep else ""
    return result


@app.command("create")
def create(
    name: str,
    subnet: Annotated[str | None, typer.Option(help="CIDR, e.g. 10.89.0.0/16")] = None,
    gateway: Annotated[str | None, typer.Option(help="Gateway address in the subnet")] = None,
    internal: Annotated[bool, typer.Option(help="No access to or from outside")] = False,
    driver: Annotated[str, typer.Option("--driver", "-d")] = "bridge",
    label: Annotated[list[str] | None, typer.Option(help="key=value")] = None,
) -> None:
    """Create a network."""
    pool = {"Subnet": subnet, "Gateway": gateway} if subnet or gateway else None
    body = {
        "Name": name,
        "Driver": driver,
        "Internal": internal,
        "Labels": parse_labels(label or []),
        "IPAM": {"Config": [pool] if pool else []},
    }
    typer.echo(api().post("/networks/create", json=body)["Id"])


@app.command("ls")
def ls(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only IDs")] = False,
    format: Annotated[str | None, typer.Option("--format", help="json")] = None,
) -> None:
    """List networks."""
    networks = api().get("/networks")
    if quiet:
        for net in networks:
            typer.echo(net["Id"][:12])
    elif format == "json":
        print_json_lines(
            [
                {
                    "CreatedAt": net["Created"],
                    "Driver": net["Driver"],
                    "ID": net["Id"][:12],
                    "IPv6": "false",
                    "Internal": str(net["Internal"]).lower(),
                    "Labels": ",".join(f"{k}={v}" for k, v in net["Labels"].items()),
                    "Name": net["Name"],
                    "Scope": net["Scope"],
                }
                for net in networks
            ]
        )
    elif format is not None:
        raise typer.BadParameter(f"unsupported format {format!r} (use json)")
    else:
        print_table(
            ["NETWORK ID", "NAME", "DRIVER", "SCOPE"],
            [[n["Id"][:12], n["Name"], n["Driver"], n["Scope"]] for n in networks],
        )


@app.command("inspect")
def inspect(networks: Annotated[list[str], typer.Argument(help="Names or ids")]) -> None:
    """Show networks as JSON."""
    client = api()
    print_json([client.get(f"/networks/{ref}") for ref in networks])


@app.command("rm")
def rm(
    networks: Annotated[list[str], typer.Argument(help="Names or ids")],
    force: Annotated[bool, typer.Option("--force", "-f", help="Even with VMs attached")] = False,
) -> None:
    """Remove networks."""
    client = api()
    failed = False
    for ref in networks:
        try:
            client.delete(f"/networks/{ref}", params={"force": force})
            typer.echo(ref)
        except ClientError as exc:  # report each and go on, as docker does
            typer.echo(f"Error: {exc}", err=True)
            failed = True
    if failed:
        raise typer.Exit(1)


@app.command("prune")
def prune(force: Annotated[bool, typer.Option("--force", "-f", help="Do not ask")] = False) -> None:
    """Remove all networks that no VM uses."""
    if not force:
        typer.echo(
            "WARNING! This will remove all custom networks not used by at least one VM.\n"
            "Are you sure you want to continue? [y/N] ",
            nl=False,
        )
        answer = sys.stdin.readline().strip().lower() if sys.stdin and not sys.stdin.closed else ""
        if answer not in ("y", "yes"):
            raise typer.Exit(1)
    deleted = api().post("/networks/prune")["NetworksDeleted"]
    if deleted:
        typer.echo("Deleted Networks:")
        for name in deleted:
            typer.echo(name)
