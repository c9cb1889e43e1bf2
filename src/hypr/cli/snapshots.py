"""`hypr snapshot create|ls|rm`: a running VM's whole state saved, to resume from with
`hypr start --snapshot NAME VM` (docs/serving.md)."""

from __future__ import annotations

import time
from urllib.parse import quote

import click

from hypr import units
from hypr.cli.context import api
from hypr.cli.output import each, print_table
from hypr.units import unix_time


@click.group(no_args_is_help=True)
def app() -> None:
    """Save running VMs and resume them later."""


@app.command("create")
@click.argument("vm")
@click.argument("name", required=False)
def create(vm: str, name: str | None) -> None:
    """Save VM's state as NAME (default: VM-TIME); the VM goes on running. Prints NAME."""
    snapshot = api().post(f"/vms/{quote(vm, safe='')}/snapshots", json={"name": name})
    click.echo(snapshot["name"])


@app.command("ls")
@click.option("--quiet", "-q", is_flag=True, help="Only names")
def ls(quiet: bool) -> None:
    """List snapshots."""
    snapshots = api().get("/snapshots")
    if quiet:
        for snapshot in snapshots:
            click.echo(snapshot["name"])
        return
    now = time.time()
    print_table(
        ["NAME", "VM", "CREATED", "SIZE"],
        [
            [s["name"], s["vm_name"],
             f"{units.human_duration(now - unix_time(s['created']))} ago",
             units.human_size(s["size"])]
            for s in snapshots
        ],
    )  # fmt: skip


@app.command("rm")
@click.argument("names", nargs=-1, required=True)
def rm(names: tuple[str, ...]) -> None:
    """Remove snapshots."""
    each(names, lambda name: api().delete(f"/snapshots/{quote(name, safe='')}"))
