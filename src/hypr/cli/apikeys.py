"""`hypr apikey ...`: keys for the REST gateway on port 41001."""

from __future__ import annotations

import click

from hypr.cli.context import api
from hypr.cli.output import print_table


@click.group(no_args_is_help=True)
def app() -> None:
    """Manage API keys of the REST gateway."""


@app.command("create")
@click.argument("name")
def create(name: str) -> None:
    """Make a key named NAME; it is printed once and only its hash is kept."""
    click.echo(api().post("/apikeys", json={"name": name})["key"])


@app.command("ls")
def ls() -> None:
    """List keys (names and prefixes, never the keys)."""
    print_table(
        ["NAME", "PREFIX", "CREATED", "LAST USED"],
        [
            [k["name"], k["prefix"] + "...", k["created"], k["last_used"] or "never"]
            for k in api().get("/apikeys")
        ],
    )


@app.command("rm")
@click.argument("name")
def rm(name: str) -> None:
    """Revoke a key."""
    api().delete(f"/apikeys/{name}")
    click.echo(name)
