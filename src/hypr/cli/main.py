"""The `hypr` command. It talks only to hyprd's API.

A command's run time is mostly imports, so the top-level group loads a command's module
only when that command runs (click's lazy group): `hypr ps` never imports compose's
models or the WebSocket client; `hypr --help` loads them all, to list them.
"""

from __future__ import annotations

import importlib
import sys

import click

from hypr.cli.client import ClientError
from hypr.errors import HyprError

# Command -> (module of hypr.cli, attribute), in the order `hypr --help` lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run", "run"),
    "exec": ("vms", "exec_"),
    "ps": ("vms", "ps"),
    "start": ("vms", "start"),
    "stop": ("vms", "stop"),
    "rm": ("vms", "rm"),
    "logs": ("vms", "logs"),
    "inspect": ("vms", "inspect"),
    "port": ("vms", "port"),
    "pull": ("images", "pull"),
    "images": ("images", "images"),
    "rmi": ("images", "rmi"),
    "tag": ("images", "tag"),
    "image": ("images", "image"),
    "build": ("build", "build"),
    "builder": ("build", "builder"),
    "history": ("images", "history"),
    "login": ("registry", "login"),
    "logout": ("registry", "logout"),
    "dns": ("dns", "dns"),
    "version": ("system", "version"),
    "info": ("system", "info"),
    "network": ("networks", "app"),
    "volume": ("volumes", "app"),
    "snapshot": ("snapshots", "app"),
    "compose": ("compose", "app"),
    "apikey": ("apikeys", "app"),
}


class LazyGroup(click.Group):
    """Commands resolved by name on first use, from the table above."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attribute = COMMANDS[cmd_name]
        command: click.Command = getattr(importlib.import_module(f"hypr.cli.{module}"), attribute)
        return command


@click.group(cls=LazyGroup, no_args_is_help=True)
def cli() -> None:
    """hypr: microVMs with Docker-compatible networking."""


def main() -> None:
    try:
        # Without standalone mode, click returns the code of an Exit instead of exiting.
        result = cli.main(standalone_mode=False)
        sys.exit(result if isinstance(result, int) else 0)
    except (ClientError, HyprError) as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except click.exceptions.NoArgsIsHelpError as exc:  # a group given no command: its help
        click.echo(exc.format_message())
        sys.exit(1)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except (click.Abort, KeyboardInterrupt):
        sys.exit(130)
    except Exception as exc:  # usage errors and the like: one line, never a traceback
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
