"""`hypr volume create|ls|inspect|rm|prune`, as `docker volume` has them."""

from __future__ import annotations

import json
from urllib.parse import quote

import click

from hypr.cli.context import api
from hypr.cli.networks import parse_labels
from hypr.cli.output import confirm_prune, each, inspect_each, print_pruned, print_table


@click.group(no_args_is_help=True)
def app() -> None:
    """Manage volumes."""


@app.command("create")
@click.argument("name", required=False)
@click.option("--driver", "-d", default="local", show_default=True, help="Only local")
@click.option("--label", multiple=True, help="key=value")
@click.option(
    "--opt", "-o", multiple=True, help="Driver option: type=none, o=bind, device=/host/dir"
)
def create(name: str | None, driver: str, label: tuple[str, ...], opt: tuple[str, ...]) -> None:
    """Create a volume (no NAME: a random one); print its name."""
    body = {
        "Name": name or "",
        "Driver": driver,
        "Labels": parse_labels(label),
        "DriverOpts": {key: value for key, _, value in (o.partition("=") for o in opt)},
    }
    click.echo(api().post("/volumes", json=body)["Name"])


@app.command("ls")
@click.option("--quiet", "-q", is_flag=True, help="Only volume names")
@click.option(
    "--filter",
    "-f",
    "filters",
    multiple=True,
    help="name=PART, label=KEY[=VALUE], label!=KEY[=VALUE], driver=local, dangling=true|false",
)
def ls(quiet: bool, filters: tuple[str, ...]) -> None:
    """List volumes."""
    wanted: dict[str, list[str]] = {}
    for item in filters:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"bad format of filter {item!r} (expected name=value)")
        wanted.setdefault(key, []).append(value)
    params = {"filters": json.dumps(wanted)} if wanted else None
    volumes = api().get("/volumes", params=params)["Volumes"]
    if quiet:
        for vol in volumes:
            click.echo(vol["Name"])
        return
    print_table(["DRIVER", "VOLUME NAME"], [[v["Driver"], v["Name"]] for v in volumes])


@app.command("inspect")
@click.argument("names", nargs=-1, required=True)
def inspect(names: tuple[str, ...]) -> None:
    """Show volumes as JSON (Docker's shape)."""
    inspect_each(names, lambda name: api().get(f"/volumes/{quote(name, safe='')}"))


@app.command("rm")
@click.argument("names", nargs=-1, required=True)
@click.option("--force", "-f", is_flag=True, help="No error for a volume that does not exist")
def rm(names: tuple[str, ...], force: bool) -> None:
    """Remove volumes (never one a VM uses)."""
    each(
        names,
        lambda name: api().delete(f"/volumes/{quote(name, safe='')}", params={"force": force}),
    )


@app.command("prune")
@click.option("--all", "-a", "all_", is_flag=True, help="Every unused volume, named ones too")
@click.option("--force", "-f", is_flag=True, help="Do not ask")
def prune(all_: bool, force: bool) -> None:
    """Remove the anonymous volumes no VM uses (every unused one with -a)."""
    which = "all local volumes" if all_ else "anonymous local volumes"
    warning = f"WARNING! This will remove {which} not used by at least one VM."
    if not force and not confirm_prune(warning):
        return
    result = api().post("/volumes/prune", params={"all": all_})
    print_pruned("Volumes", result["VolumesDeleted"], result["SpaceReclaimed"])
