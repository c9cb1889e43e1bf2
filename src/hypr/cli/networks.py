"""`hypr network ...`."""

from __future__ import annotations

import sys

import click

from hypr.cli.context import api
from hypr.cli.output import each, print_json, print_json_lines, print_table


@click.group(no_args_is_help=True)
def app() -> None:
    """Manage networks."""


def parse_labels(labels: tuple[str, ...]) -> dict[str, str]:
    result = {}
    for label in labels:
        key, sep, value = label.partition("=")
        if not key:
            raise click.BadParameter(f"invalid label {label!r}: expected key=value")
        result[key] = value if sep else ""
    return result


@app.command("create")
@click.argument("name")
@click.option("--subnet", help="CIDR, e.g. 10.89.0.0/16")
@click.option("--gateway", help="Gateway address in the subnet")
@click.option("--internal/--no-internal", help="No access to or from outside")
@click.option("--driver", "-d", default="bridge", show_default=True)
@click.option("--label", multiple=True, help="key=value")
def create(
    name: str,
    subnet: str | None,
    gateway: str | None,
    internal: bool,
    driver: str,
    label: tuple[str, ...],
) -> None:
    """Create a network."""
    pool = {"Subnet": subnet, "Gateway": gateway} if subnet or gateway else None
    body = {
        "Name": name,
        "Driver": driver,
        "Internal": internal,
        "Labels": parse_labels(label),
        "IPAM": {"Config": [pool] if pool else []},
    }
    click.echo(api().post("/networks/create", json=body)["Id"])


@app.command("ls")
@click.option("--quiet", "-q", is_flag=True, help="Only IDs")
@click.option("--format", help="json")
def ls(quiet: bool, format: str | None) -> None:
    """List networks."""
    networks = api().get("/networks")
    if quiet:
        for net in networks:
            click.echo(net["Id"][:12])
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
        raise click.BadParameter(f"unsupported format {format!r} (use json)")
    else:
        print_table(
            ["NETWORK ID", "NAME", "DRIVER", "SCOPE"],
            [[n["Id"][:12], n["Name"], n["Driver"], n["Scope"]] for n in networks],
        )


@app.command("inspect")
@click.argument("networks", nargs=-1, required=True)
def inspect(networks: tuple[str, ...]) -> None:
    """Show networks as JSON."""
    client = api()
    print_json([client.get(f"/networks/{ref}") for ref in networks])


@app.command("rm")
@click.argument("networks", nargs=-1, required=True)
@click.option("--force", "-f", is_flag=True, help="Even with VMs attached")
def rm(networks: tuple[str, ...], force: bool) -> None:
    """Remove networks."""
    each(networks, lambda ref: api().delete(f"/networks/{ref}", params={"force": force}))


@app.command("prune")
@click.option("--force", "-f", is_flag=True, help="Do not ask")
def prune(force: bool) -> None:
    """Remove all networks that no VM uses."""
    if not force:
        click.echo(
            "WARNING! This will remove all custom networks not used by at least one VM.\n"
            "Are you sure you want to continue? [y/N] ",
            nl=False,
        )
        answer = sys.stdin.readline().strip().lower() if sys.stdin and not sys.stdin.closed else ""
        if answer not in ("y", "yes"):
            raise click.exceptions.Exit(1)
    deleted = api().post("/networks/prune")["NetworksDeleted"]
    if deleted:
        click.echo("Deleted Networks:")
        for name in deleted:
            click.echo(name)
