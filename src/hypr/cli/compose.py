"""`hypr compose`: Docker Compose files brought up as microVMs by the daemon."""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import click

from hypr.cli.client import CUT_SHORT, ClientError
from hypr.cli.context import api
from hypr.cli.output import print_table
from hypr.cli.vms import (
    NO_INTERSPERSED,
    copy_logs,
    ports_text,
    run_exec,
    status_text,
    strip_separator,
)
from hypr.errors import HyprError

if TYPE_CHECKING:
    from hypr.compose.project import HostPaths, Project


class Loaded(NamedTuple):
    """A compose file read and interpolated here, with what its relative paths mean."""

    name: str
    document: dict[str, Any]
    project_dir: str  # the file's directory
    home: str | None  # for `~`: this user's home, not that of hyprd (root)

    def paths(self) -> HostPaths:
        from hypr.compose.project import HostPaths

        return HostPaths(self.project_dir, self.home)

    def project(self) -> Project:
        """Validated and normalised here, as hyprd will (for pulls, `config`, binds)."""
        from hypr.compose.project import load_project

        return load_project(self.document, self.name, self.paths())

    def body(self) -> dict[str, Any]:
        """The request body of `/stacks/NAME/up` and `/config`."""
        return {"document": self.document, "project_dir": self.project_dir, "home": self.home}


class Target:
    """The compose file and project name chosen by -f and -p."""

    file: str | None = None
    project: str | None = None

    def load(self) -> Loaded:
        # Imported here: compose's models cost more than the rest of the CLI (`--help`).
        from hypr.compose.project import find_compose_file, project_name, read_document

        path = find_compose_file(self.file, Path.cwd())
        document = read_document(path, dict(os.environ))
        home = os.path.expanduser("~")
        return Loaded(
            project_name(self.project, document, path.parent),
            document,
            str(path.parent),
            home if os.path.isabs(home) else None,
        )

    def name(self) -> str:
        """The project name; with -p no file is needed (e.g. `ps -p NAME`)."""
        if self.project:
            from hypr.compose.project import project_name

            return project_name(self.project, {}, Path.cwd())
        return self.load().name


target = Target()


@click.group(no_args_is_help=True)
@click.option("--file", "-f", help="Compose file")
@click.option("--project-name", "-p", "project")
def app(file: str | None, project: str | None) -> None:
    """Run multi-VM stacks from compose files."""
    target.file, target.project = file, project


def _print_event(event: dict[str, Any]) -> bool:
    """Show one progress event; return False on an error."""
    if "warning" in event:
        click.echo(f"WARN: {event['warning']}", err=True)
    elif "error" in event:
        click.echo(f"Error: {event['error']}", err=True)
        if event.get("rolling_back"):
            click.echo(f"rolled back: {', '.join(event['rolling_back'])}", err=True)
        return False
    elif "network" in event:
        click.echo(f" Network {event['network']:<30} {event['status']}")
    elif "volume" in event:
        click.echo(f" Volume {event['volume']:<31} {event['status']}")
    elif "vm" in event:
        click.echo(f" VM {event['vm']:<35} {event['status']}")
    return True


def _stream(path: str, body: dict[str, Any]) -> bool:
    """Show a stack operation's events; the daemon ends with `done` or a final error, so
    a stream that stops before either means the daemon went away half-way."""
    ok = True
    with api().stream("POST", path, json=body, timeout=None) as response:
        for line in response.iter_lines():
            if line.strip():
                event = json.loads(line)
                ok = _print_event(event) and ok
                if event.get("done") or event.get("final"):
                    return ok
    raise ClientError(CUT_SHORT)


@app.command()
def config() -> None:
    """Validate the file and print it normalised."""
    project = target.load().project()
    import yaml

    for warning in project.warnings:
        click.echo(f"WARN: {warning}", err=True)
    click.echo(yaml.safe_dump(project.to_dict(), sort_keys=False), nl=False)


def _images(project: Project, policy: str | None) -> list[tuple[str, str]]:
    """Each image the services name, once, with the pull policy to pull it by: the first
    service's `pull_policy`, unless `policy` overrides them all."""
    found: dict[str, str] = {}
    for service in project.services:
        found.setdefault(service.image, policy or service.pull_policy)
    return list(found.items())


def _pull(project: Project, policy: str | None) -> None:
    """Pull the services' images from here, each with its own registry's stored
    credentials (a file may name several registries)."""
    from hypr.cli.pulling import pull_as

    for image, how in _images(project, policy):
        pull_as(image, how, sys.stderr)


def _make_bind_sources(project: Project) -> None:
    """Make the missing bind sources compose makes (short syntax, `create_host_path`):
    here, as the user who runs compose, so they are that user's directories."""
    for path in project.host_paths_to_create():
        if os.path.lexists(path):
            continue
        try:
            os.makedirs(path)
        except OSError as exc:
            raise ClientError(f"cannot create bind source {path}: {exc.strerror}") from None


@app.command()
@click.option("--detach", "-d", is_flag=True)
@click.option("--remove-orphans", is_flag=True)
@click.option(
    "--pull",
    type=click.Choice(["always", "missing", "never"]),
    help="Pull images first (default: each service's pull_policy)",
)
def up(detach: bool, remove_orphans: bool, pull: str | None) -> None:
    """Pull what is missing, create networks and volumes, start services in dependency
    order."""
    loaded = target.load()
    project = loaded.project()
    _pull(project, pull)
    _make_bind_sources(project)
    name = loaded.name
    if not _stream(f"/stacks/{name}/up", {**loaded.body(), "remove_orphans": remove_orphans}):
        raise click.exceptions.Exit(1)
    if detach:
        return
    try:
        _follow_logs(name, None)
    except KeyboardInterrupt:
        click.echo("Gracefully stopping... (press Ctrl+C again to force)")
        for vm in api().get(f"/stacks/{name}")["services"].values():
            api().post(f"/vms/{vm['id']}/stop")
        raise click.exceptions.Exit(130) from None


@app.command()
def pull() -> None:
    """Pull the services' images (all of them, except those with pull_policy never)."""
    from hypr.cli.pulling import show_pull

    for image, policy in _images(target.load().project(), None):
        if policy != "never":
            show_pull(image, sys.stderr)


@app.command()
@click.option("--remove-orphans", is_flag=True)
@click.option(
    "--volumes", "-v", is_flag=True, help="Also remove the stack's volumes and anonymous ones"
)
def down(remove_orphans: bool, volumes: bool) -> None:
    """Stop and remove the stack's VMs, then its networks (and with -v its volumes)."""
    try:
        loaded = target.load()
        name, services = loaded.name, list(loaded.document.get("services") or {})
    except HyprError:
        if not target.project:
            raise
        name, services = target.name(), None  # no file: remove the whole stack
    body = {"services": services, "remove_orphans": remove_orphans, "volumes": volumes}
    if not _stream(f"/stacks/{name}/down", body):
        raise click.exceptions.Exit(1)


@app.command()
def ps() -> None:
    """List the stack's VMs."""
    stack = api().get(f"/stacks/{target.name()}")
    rows = []
    for service, vm in stack["services"].items():
        status = status_text(vm) + (f" ({vm['health']})" if vm.get("health") else "")
        rows.append(
            [
                vm["name"],
                service,
                status,
                vm["guest_ip"] or "",
                ports_text(vm["ports"]),
            ]
        )
    print_table(["NAME", "SERVICE", "STATUS", "IP", "PORTS"], rows)


@app.command()
@click.argument("service", required=False)
@click.option("--follow", "-f", is_flag=True)
def logs(service: str | None, follow: bool) -> None:
    """Show the console output of the stack's services."""
    _follow_logs(target.name(), service, follow)


def _follow_logs(name: str, service: str | None, follow: bool = True) -> None:
    stack = api().get(f"/stacks/{name}")
    vms = {s: vm for s, vm in stack["services"].items() if service in (None, s)}
    if service is not None and not vms:
        raise ClientError(f"no such service: {service}")
    width = max((len(vm["name"]) for vm in vms.values()), default=0)
    threads = [
        threading.Thread(
            target=copy_logs,
            args=(vm["id"], follow, f"{vm['name']:<{width}}  | ".encode()),
            daemon=True,
        )
        for vm in vms.values()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.2)


@app.command("exec", context_settings=NO_INTERSPERSED)
@click.argument("service")
@click.argument("command", nargs=-1, required=True)
@click.option("--interactive", "-i", is_flag=True)
def exec_(service: str, command: tuple[str, ...], interactive: bool) -> None:
    """Run COMMAND in a service's VM."""
    argv = strip_separator(list(command))
    stack = api().get(f"/stacks/{target.name()}")
    vm = stack["services"].get(service)
    if vm is None:
        raise ClientError(f"no such service: {service}")
    sys.stdout.flush()
    raise click.exceptions.Exit(run_exec(vm["name"], argv, interactive, [], None))
