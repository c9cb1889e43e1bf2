"""The `hypr` command. It talks only to hyprd's API.

A command's run time is mostly imports, so each run imports only the module of the
command it was given (`hypr ps` never loads compose's models); `hypr --help`, no
command or an unknown one load them all, to list them or to suggest one.
"""

from __future__ import annotations

import importlib
import sys

import typer

from hypr.cli.client import ClientError
from hypr.errors import HyprError

# Module of hypr.cli -> the commands it registers, in the order `hypr --help` lists them.
MODULES: dict[str, tuple[str, ...]] = {
    "vms": ("run", "exec", "ps", "start", "stop", "rm", "logs", "inspect", "port", "images"),
    "dns": ("dns",),
    "system": ("version", "info"),
    "networks": ("network",),
    "compose": ("compose",),
    "apikeys": ("apikey",),
}
COMMANDS = {command: module for module, commands in MODULES.items() for command in commands}


def build(argv: list[str]) -> typer.Typer:
    """The app with the commands this run can need."""
    app = typer.Typer(
        help="hypr: microVMs with Docker-compatible networking.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
        rich_markup_mode=None,  # plain help, as docker's; rich costs more than the rest
    )
    # A group even when one command is loaded, so `hypr ps` still means the command ps.
    app.callback()(lambda: None)
    wanted = COMMANDS.get(argv[0]) if argv else None
    for module in [wanted] if wanted else MODULES:
        importlib.import_module(f"hypr.cli.{module}").register(app)
    return app


def main() -> None:
    try:
        # Without standalone mode, click returns the code of a typer.Exit instead of exiting.
        result = build(sys.argv[1:])(standalone_mode=False)
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
    except Exception as exc:  # usage errors and the like: one line, never a traceback
        from typer._click.exceptions import NoArgsIsHelpError  # the click typer bundles

        if isinstance(exc, NoArgsIsHelpError):  # a group given no command: its help
            typer.echo(exc.format_message())
        else:
            typer.echo(f"Error: {exc}", err=True)
        sys.exit(1)
