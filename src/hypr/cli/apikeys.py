"""`hypr apikey ...`: keys for the REST gateway on port 41001."""

from __future__ import annotations

from typing import Annotated

import typer

from hypr.cli.context import api
from hypr.cli.output import print_table

app = typer.Typer(help="Manage API keys of the REST gateway.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="apikey")


@app.command("create")
def create(name: Annotated[str, typer.Argument(help="A name to recognise the key by")]) -> None:
    """Make a key; it is printed once and only its hash is kept."""
    typer.echo(api().post("/apikeys", json={"name": name})["key"])


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
def rm(name: str) -> None:
    """Revoke a key."""
    api().delete(f"/apikeys/{name}")
    typer.echo(name)
