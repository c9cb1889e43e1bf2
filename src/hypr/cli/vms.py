"""`hypr run`, `ps`, `start`, `stop`, `rm`, `logs`, `exec`, `inspect`."""

from __future__ import annotations

import json
import os
import sys
import threading
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import click

from hypr.cli.client import ClientError
from hypr.cli.context import api
from hypr.cli.output import each, fail, print_json, print_table

NO_INTERSPERSED = {"allow_interspersed_args": False}  # what follows the image is the command


def strip_separator(command: list[str]) -> list[str]:
    """`hypr exec vm -- cmd` and `hypr exec vm cmd` mean the same."""
    if command and command[0] == "--":
        return command[1:]
    return command


def copy_logs(ref: str, follow: bool, prefix: bytes = b"") -> None:
    """Copy a VM's console to stdout, each line behind `prefix` if one is given."""
    with api().stream(
        "GET", f"/vms/{ref}/logs", params={"follow": follow}, timeout=None if follow else 60
    ) as response:
        lines = response.iter_lines() if prefix else None
        if lines is None:
            for chunk in response.iter_bytes():
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
            return
        for line in lines:
            sys.stdout.buffer.write(prefix + line.encode() + b"\n")
            sys.stdout.buffer.flush()


def _ago(timestamp: str | None) -> str:
    if not timestamp:
        return ""
    seconds = int((datetime.now(UTC) - datetime.fromisoformat(timestamp)).total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count > 1 else ''}"
    return "Less than a second" if seconds < 1 else f"{seconds} seconds"


def status_text(vm: dict[str, Any]) -> str:
    state = vm["state"]
    if state == "running":
        return f"Up {_ago(vm['started_at'])}"
    if state == "exited":
        code = vm["exit_code"] if vm["exit_code"] is not None else "-"
        return f"Exited ({code}) {_ago(vm['finished_at'])} ago"
    return str(state).capitalize()


@click.command()
@click.option("--all", "-a", is_flag=True, help="Show stopped VMs too")
@click.option("--quiet", "-q", is_flag=True, help="Only IDs")
def ps(all: bool, quiet: bool) -> None:
    """List VMs."""
    vms = api().get("/vms", params={"all": all})
    if quiet:
        for vm in vms:
            click.echo(vm["id"][:12])
        return
    print_table(
        ["VM ID", "NAME", "IMAGE", "STATUS", "IP", "PORTS"],
        [
            [
                vm["id"][:12],
                vm["name"],
                vm["image"],
                status_text(vm),
                vm["guest_ip"] or "",
                ports_text(_published(vm)),
            ]
            for vm in vms
        ],
    )


def _published(vm: dict[str, Any]) -> list[dict[str, Any]]:
    """The ports open in the kernel: a VM's forwards are there only while it runs."""
    return list(vm["ports"]) if vm["state"] in ("starting", "running", "stopping") else []


def ports_text(ports: list[dict[str, Any]]) -> str:
    """Docker's PORTS column: `0.0.0.0:8080->80/tcp`, consecutive ports as one range."""
    runs: list[list[dict[str, Any]]] = []
    for fwd in sorted(ports, key=lambda p: (p["host_ip"], p["protocol"], p["host_port"])):
        last = runs[-1][-1] if runs else None
        if (
            last is not None
            and (last["host_ip"], last["protocol"]) == (fwd["host_ip"], fwd["protocol"])
            and (last["host_port"] + 1, last["guest_port"] + 1)
            == (fwd["host_port"], fwd["guest_port"])
        ):
            runs[-1].append(fwd)
        else:
            runs.append([fwd])

    def span(run: list[dict[str, Any]], key: str) -> str:
        first, last = run[0][key], run[-1][key]
        return str(first) if first == last else f"{first}-{last}"

    return ", ".join(
        f"{run[0]['host_ip']}:{span(run, 'host_port')}->{span(run, 'guest_port')}"
        f"/{run[0]['protocol']}"
        for run in runs
    )


@click.command()
@click.argument("vm")
@click.argument("guest_port", required=False)
def port(vm: str, guest_port: str | None) -> None:
    """List a running VM's published ports, as `docker port` does.

    With GUEST_PORT (PORT[/tcp|udp]), only the host addresses that forward to it."""
    ports = _published(api().get(f"/vms/{vm}"))
    if guest_port is None:
        for fwd in ports:
            click.echo(
                f"{fwd['guest_port']}/{fwd['protocol']} -> {fwd['host_ip']}:{fwd['host_port']}"
            )
        return
    number, _, protocol = guest_port.partition("/")
    wanted = f"{number}/{protocol or 'tcp'}"
    matches = [fwd for fwd in ports if f"{fwd['guest_port']}/{fwd['protocol']}" == wanted]
    if not matches:
        raise fail(f"no public port {wanted} published for {vm}")
    for fwd in matches:
        click.echo(f"{fwd['host_ip']}:{fwd['host_port']}")


@click.command()
@click.argument("vms", nargs=-1, required=True)
@click.option(
    "--time", "-t", type=int, default=10, show_default=True, help="Seconds before killing"
)
def stop(vms: tuple[str, ...], time: int) -> None:
    """Stop running VMs (SIGTERM to the workload, SIGKILL after --time)."""
    each(vms, lambda ref: api().post(f"/vms/{ref}/stop", params={"timeout": time}))


@click.command()
@click.argument("vms", nargs=-1, required=True)
@click.option("--snapshot", help="Resume from this snapshot of the VM (hypr snapshot ls)")
def start(vms: tuple[str, ...], snapshot: str | None) -> None:
    """Start stopped VMs (a sleeping one wakes)."""
    params = {"snapshot": snapshot} if snapshot else None
    each(vms, lambda ref: api().post(f"/vms/{ref}/start", params=params))


@click.command()
@click.argument("vms", nargs=-1, required=True)
@click.option("--force", "-f", is_flag=True, help="Kill running VMs")
@click.option("--volumes", "-v", is_flag=True, help="Remove the VMs' anonymous volumes too")
def rm(vms: tuple[str, ...], force: bool, volumes: bool) -> None:
    """Remove VMs."""
    each(vms, lambda ref: api().delete(f"/vms/{ref}", params={"force": force, "v": volumes}))


@click.command()
@click.argument("vm")
@click.option("--follow", "-f", is_flag=True, help="Follow the output")
def logs(vm: str, follow: bool) -> None:
    """Show a VM's console output."""
    copy_logs(vm, follow)


@click.command()
@click.argument("vms", nargs=-1, required=True)
def inspect(vms: tuple[str, ...]) -> None:
    """Show VMs as JSON."""
    print_json([api().get(f"/vms/{quote(ref, safe='')}") for ref in vms])


@click.command("exec", context_settings=NO_INTERSPERSED)
@click.argument("vm")
@click.argument("command", nargs=-1, required=True)
@click.option("--interactive", "-i", is_flag=True, help="Relay stdin")
@click.option("--env", "-e", multiple=True, help="K=V")
@click.option("--workdir", "-w")
@click.option("--user", "-u", help="USER[:GROUP] (default: the VM's user)")
def exec_(
    vm: str,
    command: tuple[str, ...],
    interactive: bool,
    env: tuple[str, ...],
    workdir: str | None,
    user: str | None,
) -> None:
    """Run COMMAND in a running VM; its exit code is hypr's."""
    argv = strip_separator(list(command))
    if not argv:
        raise click.BadParameter("missing command to run in the VM")
    raise click.exceptions.Exit(run_exec(vm, argv, interactive, list(env), workdir, user))


def run_exec(
    vm: str,
    command: list[str],
    interactive: bool,
    env: list[str],
    workdir: str | None,
    user: str | None = None,
) -> int:
    """Relay one exec session over the API's WebSocket; return the command's exit code."""
    from websockets.sync.client import unix_connect  # only exec pays for its import

    client = api()
    start = {
        "command": command, "env": env, "workdir": workdir, "interactive": interactive,
        "user": user,
    }  # fmt: skip
    try:
        ws = unix_connect(str(client.socket_path), f"ws://hypr/vms/{vm}/exec/ws")
    except OSError:
        raise ClientError(
            f"cannot connect to the hypr daemon at unix://{client.socket_path}: is hyprd running?"
        ) from None
    with ws:
        ws.send(json.dumps(start))
        if interactive:
            threading.Thread(target=_relay_stdin, args=(ws,), daemon=True).start()
        return _relay_output(ws)


def _relay_stdin(ws: Any) -> None:
    from websockets.exceptions import ConnectionClosed

    try:
        stdin = sys.stdin.buffer
        while chunk := os.read(stdin.fileno(), 65536):
            ws.send(chunk)
        ws.send(json.dumps({"stdin_eof": True}))
    except (ConnectionClosed, OSError, ValueError):
        return


def _relay_output(ws: Any) -> int:
    try:
        for message in ws:
            if isinstance(message, bytes):
                out = sys.stdout.buffer if message[:1] == b"\x01" else sys.stderr.buffer
                out.write(message[1:])
                out.flush()
                continue
            control = json.loads(message)
            if "exit_code" in control:
                return int(control["exit_code"])
            raise ClientError(control.get("message", "exec failed"))
    except KeyboardInterrupt:
        ws.send(json.dumps({"signal": 2}))
        return 130
    raise ClientError("the exec session ended without an exit code")
