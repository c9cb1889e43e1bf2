"""`hypr run`, `ps`, `start`, `stop`, `rm`, `logs`, `exec`, `inspect`, `images`."""

from __future__ import annotations

import json
import os
import sys
import threading
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from hypr import units
from hypr.cli.client import ClientError
from hypr.cli.context import api
from hypr.cli.output import fail, print_json, print_table
from hypr.errors import InvalidArgument


def run(
    image: Annotated[str, typer.Argument(help="Image, e.g. busybox")],
    command: Annotated[list[str] | None, typer.Argument(help="Command and arguments")] = None,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Run in background")] = False,
    name: Annotated[str | None, typer.Option(help="VM name (a DNS label)")] = None,
    network: Annotated[
        list[str] | None, typer.Option("--network", "--net", help="Network to join, or none")
    ] = None,
    ip: Annotated[str | None, typer.Option(help="IPv4 address on the first network")] = None,
    mac: Annotated[str | None, typer.Option(help="MAC address of the first NIC")] = None,
    cpus: Annotated[int, typer.Option(help="Number of vCPUs")] = 1,
    memory: Annotated[
        str, typer.Option("--memory", "-m", help="Memory, e.g. 256m (a bare number is bytes)")
    ] = "256m",
    env: Annotated[list[str] | None, typer.Option("--env", "-e", help="K=V")] = None,
    restart: Annotated[str, typer.Option(help="no, always, on-failure[:N]")] = "no",
    workdir: Annotated[str | None, typer.Option("--workdir", "-w")] = None,
    entrypoint: Annotated[str | None, typer.Option(help="Override the entrypoint")] = None,
    rm: Annotated[bool, typer.Option("--rm", help="Remove the VM when it exits")] = False,
    dhcp: Annotated[bool, typer.Option(help="Guest takes its address by DHCP")] = False,
    publish: Annotated[
        list[str] | None,
        typer.Option(
            "--publish", "-p", help="Publish a port: [HOST_IP:]HOST_PORT:GUEST_PORT[/tcp|udp]"
        ),
    ] = None,
    ssh: Annotated[
        bool, typer.Option("--ssh", help="Forward a host port of the SSH pool to guest port 22")
    ] = False,
) -> None:
    """Create and start a VM."""
    command = _strip_separator(command)
    try:
        memory_mib = units.memory_mib(memory)
    except InvalidArgument as exc:
        raise fail(exc.message, 125) from None
    networks: list[dict[str, Any]] | None = None
    if network:
        if "none" in network:
            if len(network) > 1 or ip or mac:
                raise typer.BadParameter("--network none cannot be combined with other networks")
            networks = []
        else:
            networks = [{"network": n} for n in network]
    if ip or mac:
        networks = networks or [{"network": "bridge"}]
        networks[0] = {**networks[0], "ip": ip, "mac": mac}
    body = {
        "image": image,
        "name": name,
        "command": command or None,
        "entrypoint": [entrypoint] if entrypoint else None,
        "env": env or [],
        "networks": networks,
        "vcpus": cpus,
        "memory_mib": memory_mib,
        "restart": restart,
        "workdir": workdir,
        "dhcp": dhcp,
        "auto_remove": rm,
        "ports": publish or [],
        "ssh": ssh,
    }
    client = api()
    try:
        vm = client.post("/vms", json=body)
    except ClientError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(125) from None
    if detach:
        typer.echo(vm["id"])
        return
    copy_logs(vm["id"], follow=True)
    code = client.post(f"/vms/{vm['id']}/wait")["exit_code"]
    raise typer.Exit(code if code is not None else 1)


def _strip_separator(command: list[str] | None) -> list[str] | None:
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


def ps(
    all: Annotated[bool, typer.Option("--all", "-a", help="Show stopped VMs too")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only IDs")] = False,
) -> None:
    """List VMs."""
    vms = api().get("/vms", params={"all": all})
    if quiet:
        for vm in vms:
            typer.echo(vm["id"][:12])
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


def port(
    vm: str,
    guest_port: Annotated[
        str | None, typer.Argument(help="Only this guest port: PORT[/tcp|udp]")
    ] = None,
) -> None:
    """List a running VM's published ports, as `docker port` does."""
    ports = _published(api().get(f"/vms/{vm}"))
    if guest_port is None:
        for fwd in ports:
            typer.echo(
                f"{fwd['guest_port']}/{fwd['protocol']} -> {fwd['host_ip']}:{fwd['host_port']}"
            )
        return
    number, _, protocol = guest_port.partition("/")
    wanted = f"{number}/{protocol or 'tcp'}"
    matches = [fwd for fwd in ports if f"{fwd['guest_port']}/{fwd['protocol']}" == wanted]
    if not matches:
        raise fail(f"no public port {wanted} published for {vm}")
    for fwd in matches:
        typer.echo(f"{fwd['host_ip']}:{fwd['host_port']}")


def _each(refs: list[str], action: Any) -> None:
    """Apply `action` to every VM, reporting failures one line each, as docker does."""
    failed = False
    for ref in refs:
        try:
            action(ref)
            typer.echo(ref)
        except ClientError as exc:
            typer.echo(f"Error: {exc}", err=True)
            failed = True
    if failed:
        raise typer.Exit(1)


def stop(
    vms: Annotated[list[str], typer.Argument(help="Names or ids")],
    time: Annotated[int, typer.Option("--time", "-t", help="Seconds before killing")] = 10,
) -> None:
    """Stop running VMs (SIGTERM to the workload, SIGKILL after --time)."""
    _each(vms, lambda ref: api().post(f"/vms/{ref}/stop", params={"timeout": time}))


def start(vms: Annotated[list[str], typer.Argument(help="Names or ids")]) -> None:
    """Start stopped VMs."""
    _each(vms, lambda ref: api().post(f"/vms/{ref}/start"))


def rm(
    vms: Annotated[list[str], typer.Argument(help="Names or ids")],
    force: Annotated[bool, typer.Option("--force", "-f", help="Kill running VMs")] = False,
) -> None:
    """Remove VMs."""
    _each(vms, lambda ref: api().delete(f"/vms/{ref}", params={"force": force}))


def logs(
    vm: str,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Follow the output")] = False,
) -> None:
    """Show a VM's console output."""
    copy_logs(vm, follow)


def inspect(vms: Annotated[list[str], typer.Argument(help="Names or ids")]) -> None:
    """Show VMs as JSON."""
    print_json([api().get(f"/vms/{ref}") for ref in vms])


def images() -> None:
    """List images."""
    print_table(
        ["REPOSITORY", "TAG", "IMAGE ID", "SIZE"],
        [
            [i["repository"], i["tag"], i["id"][:12], f"{i['size'] / 2**20:.1f}MB"]
            for i in api().get("/images")
        ],
    )


def exec(
    vm: str,
    command: Annotated[list[str], typer.Argument(help="Command and arguments")],
    interactive: Annotated[bool, typer.Option("--interactive", "-i", help="Relay stdin")] = False,
    env: Annotated[list[str] | None, typer.Option("--env", "-e", help="K=V")] = None,
    workdir: Annotated[str | None, typer.Option("--workdir", "-w")] = None,
) -> None:
    """Run a command in a running VM; its exit code is hypr's."""
    command = _strip_separator(command) or []
    if not command:
        raise typer.BadParameter("missing command to run in the VM")
    raise typer.Exit(run_exec(vm, command, interactive, env or [], workdir))


def run_exec(
    vm: str, command: list[str], interactive: bool, env: list[str], workdir: str | None
) -> int:
    """Relay one exec session over the API's WebSocket; return the command's exit code."""
    from websockets.sync.client import unix_connect  # only exec pays for its import

    client = api()
    start = {"command": command, "env": env, "workdir": workdir, "interactive": interactive}
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


def register(app: typer.Typer) -> None:
    no_interspersed = {"allow_interspersed_args": False}
    app.command(context_settings=no_interspersed)(run)
    app.command(context_settings=no_interspersed)(exec)
    for command in (ps, start, stop, rm, logs, inspect, port, images):
        app.command()(command)
