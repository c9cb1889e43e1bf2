"""`hypr login` and `hypr logout`."""

from __future__ import annotations

import getpass
import sys

import click

from hypr.cli import credentials
from hypr.cli.context import api
from hypr.errors import InvalidArgument


@click.command()
@click.option("-u", "--username", help="User name")
@click.option("-p", "--password", help="Password (insecure: use --password-stdin)")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin")
@click.argument("server", required=False, default=credentials.DOCKER_HUB)
def login(username: str | None, password: str | None, password_stdin: bool, server: str) -> None:
    """Log in to a registry (credentials kept in ~/.hypr/config.json)."""
    if password is not None and password_stdin:
        raise InvalidArgument("--password and --password-stdin are mutually exclusive")
    if password_stdin:
        if not username:
            raise InvalidArgument("must provide --username with --password-stdin")
        password = sys.stdin.read().removesuffix("\n").removesuffix("\r")
    elif password is not None:
        click.echo(
            "WARNING! Using --password via the CLI is insecure. Use --password-stdin.", err=True
        )
    if not username:
        username = click.prompt("Username", type=str)
    if password is None:
        password = getpass.getpass("Password: ")
    if not username or not password:
        raise InvalidArgument("user name and password are required")
    name = credentials.server_name(server)
    api().post("/auth", json={"username": username, "password": password, "serveraddress": name})
    credentials.save(name, credentials.Credentials(username, password))
    click.echo("Login Succeeded")


@click.command()
@click.argument("server", required=False, default=credentials.DOCKER_HUB)
def logout(server: str) -> None:
    """Forget the credentials kept for a registry."""
    name = credentials.server_name(server)
    if credentials.remove(name):
        click.echo(f"Removing login credentials for {name}")
    else:
        click.echo(f"Not logged in to {name}")
