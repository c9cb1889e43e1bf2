"""`hypr compose` commands that look at, or act on, a stack's VMs as the daemon has them:
ps, logs, exec, top, start, stop, restart, ls. They need the project's name, not its file.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import click

from hypr.cli.client import ClientError
from hypr.cli.compose_files import target
from hypr.cli.context import api
from hypr.cli.output import print_table
from hypr.cli.vms import NO_INTERSPERSED, copy_logs, ports_text, run_exec, status_text
from hypr.cli.vms import strip_separator as _strip


def _vms(name: str, services: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The stack's VMs (in dependency order), only those of `services` if any are named."""
    vms: list[dict[str, Any]] = api().get(f"/stacks/{name}")["vms"]
    for service in services:
        if not any(vm["service"] == service for vm in vms):
            raise ClientError(f"no such service: {service}")
    return [vm for vm in vms if not services or vm["service"] in services]


@click.command()
@click.argument("services", nargs=-1)
def ps(services: tuple[str, ...]) -> None:
    """List the stack's VMs."""
    rows = []
    for vm in _vms(target.name(), services):
        status = status_text(vm) + (f" ({vm['health']})" if vm.get("health") else "")
        rows.append(
            [vm["name"], vm["service"], status, vm["guest_ip"] or "", ports_text(vm["ports"])]
        )
    print_table(["NAME", "SERVICE", "STATUS", "IP", "PORTS"], rows)


@click.command()
@click.argument("services", nargs=-1)
@click.option("--follow", "-f", is_flag=True)
def logs(services: tuple[str, ...], follow: bool) -> None:
    """Show the console output of the stack's VMs."""
    follow_logs(target.name(), services, follow)


def follow_logs(name: str, services: tuple[str, ...], follow: bool = True) -> None:
    vms = _vms(name, services)
    width = max((len(vm["name"]) for vm in vms), default=0)
    threads = [
        threading.Thread(
            target=copy_logs,
            args=(vm["id"], follow, f"{vm['name']:<{width}}  | ".encode()),
            daemon=True,
        )
        for vm in vms
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.2)


@click.command("exec", context_settings=NO_INTERSPERSED)
@click.argument("service")
@click.argument("command", nargs=-1, required=True)
@click.option("--interactive", "-i", is_flag=True)
@click.option("--index", default=1, show_default=True, help="Which replica")
def exec_(service: str, command: tuple[str, ...], interactive: bool, index: int) -> None:
    """Run COMMAND in a service's VM."""
    argv = _strip(list(command))
    vm = next((vm for vm in _vms(target.name(), (service,)) if vm["number"] == index), None)
    if vm is None:
        raise ClientError(f"service {service} has no replica {index}")
    sys.stdout.flush()
    raise click.exceptions.Exit(run_exec(vm["name"], argv, interactive, [], None))


@click.command()
@click.argument("services", nargs=-1)
def top(services: tuple[str, ...]) -> None:
    """The processes of each running VM, as its `ps` in the guest lists them."""
    for vm in _vms(target.name(), services):
        if vm["state"] != "running":
            continue
        result = api().post(
            f"/vms/{vm['id']}/exec", json={"command": ["ps", "-o", "pid,user,args"]}
        )
        click.echo(vm["name"])
        if result["exit_code"] != 0:
            click.echo(f"  (ps failed: {result['stderr'].strip() or result['exit_code']})")
            continue
        click.echo(result["stdout"], nl=False)
        click.echo()


@click.command()
@click.argument("services", nargs=-1)
def start(services: tuple[str, ...]) -> None:
    """Start the stack's stopped VMs, in dependency order."""
    for vm in _vms(target.name(), services):
        if vm["state"] not in ("running", "starting"):
            api().post(f"/vms/{vm['id']}/start")
            click.echo(f" VM {vm['name']:<35} Started")


@click.command()
@click.argument("services", nargs=-1)
@click.option("--timeout", "-t", type=float, default=10, show_default=True)
def stop(services: tuple[str, ...], timeout: float) -> None:
    """Stop the stack's VMs, in reverse dependency order (they stay, for `start`)."""
    _stop(_vms(target.name(), services), timeout)


def _stop(vms: list[dict[str, Any]], timeout: float) -> None:
    for vm in reversed(vms):
        if vm["state"] in ("running", "starting"):
            api().post(f"/vms/{vm['id']}/stop", params={"timeout": timeout})
            click.echo(f" VM {vm['name']:<35} Stopped")


@click.command()
@click.argument("services", nargs=-1)
@click.option("--timeout", "-t", type=float, default=10, show_default=True)
def restart(services: tuple[str, ...], timeout: float) -> None:
    """Stop the stack's VMs, then start them again in dependency order."""
    vms = _vms(target.name(), services)
    _stop(vms, timeout)
    for vm in vms:
        api().post(f"/vms/{vm['id']}/start")
        click.echo(f" VM {vm['name']:<35} Started")


@click.command("ls")
def ls() -> None:
    """List the stacks and the states of their VMs."""
    rows = [[stack["name"], stack["status"]] for stack in api().get("/stacks")]
    print_table(["NAME", "STATUS"], rows)


COMMANDS = [ps, logs, exec_, top, start, stop, restart, ls]
