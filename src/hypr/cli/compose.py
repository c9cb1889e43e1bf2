"""`hypr compose`: Docker Compose files brought up as microVMs by the daemon.

The files are read here (hypr.cli.compose_files), merged into one document that the
daemon deploys; the commands that only look at or act on a stack's VMs are in
hypr.cli.compose_view.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any

import click

from hypr.cli.client import CUT_SHORT, ClientError
from hypr.cli.compose_files import target
from hypr.cli.context import api
from hypr.cli.vms import NO_INTERSPERSED, copy_logs, strip_separator
from hypr.errors import HyprError

if TYPE_CHECKING:
    from hypr.compose.project import Project


@click.group(no_args_is_help=True)
@click.option("--file", "-f", "files", multiple=True, help="Compose file (repeatable; - is stdin)")
@click.option("--project-name", "-p", "project")
@click.option("--project-directory", help="Base of relative paths (default: the first file's)")
@click.option("--profile", "profiles", multiple=True, help="Activate a profile (repeatable)")
@click.option("--env-file", "env_files", multiple=True, help="Variables file (default: .env)")
def app(
    files: tuple[str, ...],
    project: str | None,
    project_directory: str | None,
    profiles: tuple[str, ...],
    env_files: tuple[str, ...],
) -> None:
    """Run multi-VM stacks from compose files."""
    from hypr.compose.files import Options

    target.options = Options(files, project_directory, project, profiles, env_files)


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


def stream(path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Show a stack operation's events and return them; exit 1 after an error. The daemon
    ends with `done` or a final error, so a stream that stops before either means the
    daemon went away half-way."""
    ok, events = True, []
    with api().stream("POST", path, json=body, timeout=None) as response:
        for line in response.iter_lines():
            if line.strip():
                events.append(json.loads(line))
                ok = _print_event(events[-1]) and ok
                if events[-1].get("done") or events[-1].get("final"):
                    if not ok:
                        raise click.exceptions.Exit(1)
                    return events
    raise ClientError(CUT_SHORT)


@app.command()
@click.option("--services", "what", flag_value="services", help="The enabled services' names")
@click.option("--volumes", "what", flag_value="volumes", help="The top-level volumes' names")
@click.option("--profiles", "what", flag_value="profiles", help="Every profile of the file")
@click.option("--quiet", "-q", is_flag=True, help="Only validate")
def config(what: str | None, quiet: bool) -> None:
    """Validate the files and print them merged and normalised."""
    loaded = target.load()
    project = loaded.project()
    for warning in project.warnings:
        click.echo(f"WARN: {warning}", err=True)
    if quiet:
        return
    services = loaded.document.get("services") or {}
    listed = {
        "services": [s.name for s in project.services],
        "volumes": list(loaded.document.get("volumes") or {}),
        "profiles": sorted({p for s in services.values() for p in s.get("profiles") or []}),
    }
    if what is not None:
        for name in listed[what]:
            click.echo(name)
        return
    import yaml

    click.echo(yaml.safe_dump(project.to_dict(), sort_keys=False), nl=False)


def _images(project: Project, policy: str | None) -> list[tuple[str, str]]:
    """Each image the services pull (not those they build), once, with the pull policy to
    pull it by: the first service's `pull_policy`, unless `policy` overrides them all."""
    found: dict[str, str] = {}
    for service in [*project.services, *filter(None, [project.oneoff])]:
        if service.build is None:
            found.setdefault(service.image, policy or service.pull_policy)
    return list(found.items())


def _prepare(project: Project, policy: str | None, build: bool = False) -> None:
    """What `up` and `run` do here before the daemon deploys: build the images of services
    with `build:` that are missing (all of them with `build`), pull the others (each
    registry with its own stored credentials), and make the missing bind sources compose
    makes, as the user who runs compose, so they are that user's."""
    from hypr.cli.compose_build import build_services
    from hypr.cli.pulling import pull_as

    build_services(project, only_missing=not build, out=sys.stderr)
    for image, how in _images(project, policy):
        pull_as(image, how, sys.stderr)
    for path in project.host_paths_to_create():
        if os.path.lexists(path):
            continue
        try:
            os.makedirs(path)
        except OSError as exc:
            raise ClientError(f"cannot create bind source {path}: {exc.strerror}") from None


@app.command()
@click.argument("services", nargs=-1)
@click.option("--detach", "-d", is_flag=True)
@click.option("--remove-orphans", is_flag=True)
@click.option("--scale", multiple=True, help="SERVICE=N replicas (overrides deploy.replicas)")
@click.option("--no-deps", is_flag=True, help="Not the services the named ones depend on")
@click.option(
    "--pull",
    type=click.Choice(["always", "missing", "never"]),
    help="Pull images first (default: each service's pull_policy)",
)
@click.option("--build", is_flag=True, help="Build images before starting (else only missing)")
def up(
    services: tuple[str, ...],
    detach: bool,
    remove_orphans: bool,
    scale: tuple[str, ...],
    no_deps: bool,
    pull: str | None,
    build: bool,
) -> None:
    """Pull what is missing, create networks and volumes, start services (all, or the
    named ones and what they depend on) in dependency order."""
    from hypr.compose.select import parse_scale

    loaded = target.load()
    chosen = {"services": list(services), "scale": parse_scale(scale), "no_deps": no_deps}
    _prepare(loaded.project(**chosen), pull, build)
    body = {**loaded.body(**chosen), "remove_orphans": remove_orphans}
    stream(f"/stacks/{loaded.name}/up", body)
    if detach:
        return
    from hypr.cli.compose_view import follow_logs

    try:
        follow_logs(loaded.name, services)
    except KeyboardInterrupt:
        click.echo("Gracefully stopping... (press Ctrl+C again to force)")
        for vm in api().get(f"/stacks/{loaded.name}")["vms"]:
            if vm["service"] in (services or [vm["service"]]):
                api().post(f"/vms/{vm['id']}/stop")
        raise click.exceptions.Exit(130) from None


@app.command("run", context_settings=NO_INTERSPERSED)
@click.argument("service")
@click.argument("command", nargs=-1)
@click.option("--rm", is_flag=True, help="Remove the VM when it exits")
@click.option("--detach", "-d", is_flag=True)
@click.option("--env", "-e", multiple=True, help="K=V, besides the service's")
@click.option("--entrypoint", help="Override the entrypoint")
@click.option("--no-deps", is_flag=True, help="Not the services it depends on")
def run(
    service: str,
    command: tuple[str, ...],
    rm: bool,
    detach: bool,
    env: tuple[str, ...],
    entrypoint: str | None,
    no_deps: bool,
) -> None:
    """Run a one-off VM of SERVICE (its config and networks, COMMAND if given), after the
    services it depends on."""
    loaded = target.load()
    _prepare(loaded.project(services=[service], no_deps=no_deps, run=service), None)
    argv = strip_separator(list(command))
    body = {
        **loaded.body(no_deps=no_deps),
        "service": service,
        "command": argv or None,
        "entrypoint": None if entrypoint is None else [entrypoint] if entrypoint else [],
        "env": list(env),
        "rm": rm,
    }
    events = stream(f"/stacks/{loaded.name}/run", body)
    vm_id = next(e["run"] for e in events if "run" in e)
    if detach:
        click.echo(vm_id)
        return
    copy_logs(vm_id, follow=True)
    code = api().post(f"/vms/{vm_id}/wait")["exit_code"]
    raise click.exceptions.Exit(code if code is not None else 1)


@app.command()
@click.argument("services", nargs=-1)
def pull(services: tuple[str, ...]) -> None:
    """Pull the services' images (all of them, except those with pull_policy never)."""
    from hypr.cli.pulling import show_pull

    for image, policy in _images(target.load().project(services=list(services)), None):
        if policy != "never":
            show_pull(image, sys.stderr)


@app.command("build")
@click.argument("services", nargs=-1)
@click.option("--no-cache", is_flag=True, help="Do not use the build cache")
@click.option("--pull", is_flag=True, help="Pull FROM images even if present")
def build_(services: tuple[str, ...], no_cache: bool, pull: bool) -> None:
    """Build the images of the services with `build:` (all, or the named ones)."""
    from hypr.cli.compose_build import build_services

    project = target.load().project(services=list(services), no_deps=True)
    build_services(project, only_missing=False, no_cache=no_cache, pull=pull)


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
        assert target.options is not None
        if not target.options.project_name:
            raise
        name, services = target.name(), None  # no file: remove the whole stack
    body = {"services": services, "remove_orphans": remove_orphans, "volumes": volumes}
    stream(f"/stacks/{name}/down", body)


def _register_views() -> None:
    """The commands of hypr.cli.compose_view, in this group."""
    from hypr.cli import compose_view

    for command in compose_view.COMMANDS:
        app.add_command(command)


_register_views()
