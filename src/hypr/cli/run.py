"""`hypr run`: the request built from Docker's flags, the pull, then the attached output."""

from __future__ import annotations

import sys
from typing import Any, TextIO

import click

from hypr import units
from hypr.cli.client import ClientError
from hypr.cli.context import api
from hypr.cli.mounts import mount_option, tmpfs_option, volume_option
from hypr.cli.output import fail
from hypr.cli.vms import NO_INTERSPERSED, copy_logs, strip_separator
from hypr.errors import InvalidArgument


@click.command(context_settings=NO_INTERSPERSED)
@click.argument("image")
@click.argument("command", nargs=-1)
@click.option("--detach", "-d", is_flag=True, help="Run in background")
@click.option("--name", help="VM name (letters, digits, _ . -; a DNS name too)")
@click.option("--network", "--net", multiple=True, help="Network to join, or none")
@click.option("--ip", help="IPv4 address on the first network")
@click.option("--mac", help="MAC address of the first NIC")
@click.option("--cpus", type=int, default=1, show_default=True, help="Number of vCPUs")
@click.option(
    "--memory",
    "-m",
    default="256m",
    show_default=True,
    help="Memory, e.g. 256m (a bare number is bytes)",
)
@click.option("--env", "-e", multiple=True, help="K=V")
@click.option("--restart", default="no", show_default=True, help="no, always, on-failure[:N]")
@click.option("--workdir", "-w")
@click.option("--user", "-u", help="USER[:GROUP], names or ids, as in the image")
@click.option("--stop-signal", help="Signal that stops the VM's process (default SIGTERM)")
@click.option("--entrypoint", help="Override the entrypoint")
@click.option("--rm", is_flag=True, help="Remove the VM when it exits")
@click.option("--dhcp/--no-dhcp", help="Guest takes its address by DHCP")
@click.option(
    "--publish",
    "-p",
    multiple=True,
    help="Publish a port: [HOST_IP:]HOST_PORT:GUEST_PORT[/tcp|udp]",
)
@click.option(
    "--publish-all", "-P", is_flag=True, help="Publish every exposed port on a free host port"
)
@click.option(
    "--expose",
    multiple=True,
    help="Expose a port, PORT[/tcp|udp]: the proxy serves TCP ones as <PORT>-<vm>.<domain>",
)
@click.option(
    "--pull",
    type=click.Choice(["missing", "always", "never"]),
    default="missing",
    show_default=True,
    help="Pull the image before running",
)
@click.option("--ssh", is_flag=True, help="Forward a host port of the SSH pool to guest port 22")
@click.option(
    "--volume", "-v", "volumes", multiple=True, help="[SOURCE:]TARGET[:ro], a volume or host path"
)
@click.option(
    "--mount", "mounts", multiple=True, help="type=volume|bind|tmpfs,source=..,target=..[,readonly]"
)
@click.option("--tmpfs", multiple=True, help="TARGET[:size=64m,mode=1777]")
@click.option(
    "--user-data",
    type=click.File("r", encoding="utf-8"),
    help="cloud-init user data: a #cloud-config file or a #! script (- for stdin)",
)
@click.option(
    "--idle-timeout",
    help="Put the VM to sleep after this long without use (30s, 5m); it wakes when used",
)
def run(
    image: str,
    command: tuple[str, ...],
    detach: bool,
    name: str | None,
    network: tuple[str, ...],
    ip: str | None,
    mac: str | None,
    cpus: int,
    memory: str,
    env: tuple[str, ...],
    restart: str,
    workdir: str | None,
    user: str | None,
    stop_signal: str | None,
    entrypoint: str | None,
    rm: bool,
    dhcp: bool,
    publish: tuple[str, ...],
    publish_all: bool,
    expose: tuple[str, ...],
    pull: str,
    ssh: bool,
    volumes: tuple[str, ...],
    mounts: tuple[str, ...],
    tmpfs: tuple[str, ...],
    user_data: TextIO | None,
    idle_timeout: str | None,
) -> None:
    """Create and start a VM.

    It boots IMAGE and runs COMMAND in it (the image's own command if none is given)."""
    argv = strip_separator(list(command))
    try:
        memory_mib = units.memory_mib(memory)
        mount_requests = [mount_option(text) for text in mounts]
        idle_seconds = units.go_duration(idle_timeout) / 1e9 if idle_timeout else None
    except (InvalidArgument, ValueError) as exc:
        raise fail(getattr(exc, "message", str(exc)), 125) from None
    networks: list[dict[str, Any]] | None = None
    if network:
        if "none" in network:
            if len(network) > 1 or ip or mac:
                raise click.BadParameter("--network none cannot be combined with other networks")
            networks = []
        else:
            networks = [{"network": n} for n in network]
    if ip or mac:
        networks = networks or [{"network": "bridge"}]
        networks[0] = {**networks[0], "ip": ip, "mac": mac}
    body = {
        "image": image,
        "name": name,
        "command": argv or None,
        # `--entrypoint ""` clears the image's entrypoint, as in Docker.
        "entrypoint": None if entrypoint is None else [entrypoint] if entrypoint else [],
        "env": list(env),
        "networks": networks,
        "vcpus": cpus,
        "memory_mib": memory_mib,
        "restart": restart,
        "workdir": workdir,
        "user": user,
        "stop_signal": stop_signal,
        "dhcp": dhcp,
        "auto_remove": rm,
        "ports": list(publish),
        "publish_all": publish_all,
        "expose": list(expose),
        "pull": pull,
        "ssh": ssh,
        "volumes": [volume_option(text) for text in volumes],
        "mounts": mount_requests,
        "tmpfs": dict(tmpfs_option(text) for text in tmpfs),
        "user_data": user_data.read() if user_data is not None else None,
        "idle_timeout": idle_seconds,
    }
    client = api()
    try:
        from hypr.cli.pulling import auth_headers, pull_as  # only `run` pays for it

        # Pulled here, so the user sees the progress; the daemon pulls what API users run.
        if pull_as(image, pull, sys.stderr):
            body["pull"] = "missing"
        vm = client.post("/vms", json=body, headers=auth_headers(image))
    except ClientError as exc:
        raise fail(str(exc), 125) from None
    if detach:
        click.echo(vm["id"])
        return
    copy_logs(vm["id"], follow=True)
    code = client.post(f"/vms/{vm['id']}/wait")["exit_code"]
    raise click.exceptions.Exit(code if code is not None else 1)
