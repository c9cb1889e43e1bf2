"""A VM in Docker's container shapes: `GET /containers/{id}/json` (inspect) and the items of
`GET /containers/json` (list), from the daemon's read model.

A VM's states map onto Docker's: created, running (booting, running and stopping: its
hypervisor is alive) and exited. Addresses, endpoints and published ports are shown while
the VM runs, as Docker shows a container's; the configured ones stay in HostConfig.
"""

from __future__ import annotations

import time
from typing import Any

from hypr.api.docker.filters import rfc3339_nanos
from hypr.daemon.views import ContainerDetails, VmDetails
from hypr.state.vms import HealthcheckSpec, MountSpec, VmRecord, endpoint_id
from hypr.units import MIB, human_duration

NANOS = 1_000_000_000
ZERO_TIME = "0001-01-01T00:00:00Z"
FAILED_EXIT_CODE = 255  # a VM that died without its workload's code (its Error says why)


def docker_state(vm: VmRecord) -> str:
    if vm.state in ("starting", "running", "stopping", "sleeping"):
        return "running"  # a sleeping VM wakes at the next use: to Docker's clients it runs
    return "created" if vm.state == "created" else "exited"


def exit_status(code: int | None, error: str | None) -> int:
    """The exit code Docker reports: the workload's, else 255 for a VM that failed."""
    if code is not None:
        return code
    return FAILED_EXIT_CODE if error else 0


def status_text(c: ContainerDetails, now: float | None = None) -> str:
    """`docker ps`'s STATUS: "Up 3 seconds (healthy)", "Exited (0) 2 minutes ago"."""
    vm = c.details.vm
    now = time.time() if now is None else now
    state = docker_state(vm)
    if state == "created":
        return "Created"
    if state == "running":
        up = f"Up {human_duration(now - _seconds(vm.started_at, now))}"
        if c.health is None:
            return up
        return f"{up} (health: starting)" if c.health == "starting" else f"{up} ({c.health})"
    code = exit_status(vm.exit_code, vm.error)
    return f"Exited ({code}) {human_duration(now - _seconds(vm.finished_at, now))} ago"


def inspect_view(c: ContainerDetails, short_id_alias: bool) -> dict[str, Any]:
    """Docker's ContainerInspectResponse. `short_id_alias`: list the 12-digit id among each
    network's Aliases, as Docker did before API 1.45 (docker-compose 1.29 relies on it)."""
    details, vm = c.details, c.details.vm
    running = docker_state(vm) == "running"
    spec = vm.spec
    health = None
    if spec.healthcheck is not None:
        health = {"Status": c.health or "starting", "FailingStreak": c.failing_streak, "Log": []}
    return {
        "Id": vm.id,
        "Created": vm.created,
        "Path": spec.argv[0] if spec.argv else "",
        "Args": spec.argv[1:],
        "State": {
            "Status": docker_state(vm),
            "Running": running,
            "Paused": False,
            "Restarting": False,
            "OOMKilled": False,
            "Dead": False,
            "Pid": (vm.pid or 0) if running else 0,
            "ExitCode": exit_status(vm.exit_code, vm.error),
            "Error": vm.error or "",
            "StartedAt": vm.started_at or ZERO_TIME,
            "FinishedAt": vm.finished_at or ZERO_TIME,
            **({"Health": health} if health else {}),
        },
        "Image": c.image_id,
        "ResolvConfPath": "",
        "HostnamePath": "",
        "HostsPath": "",
        "LogPath": str(details.log_path),
        "Name": f"/{vm.name}",
        "RestartCount": vm.restarts,
        "Driver": "squashfs+overlay",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": None,
        "HostConfig": _host_config(details),
        "GraphDriver": {"Name": "squashfs+overlay", "Data": None},
        "Mounts": _mounts(details),
        "Config": _config(details),
        "NetworkSettings": _network_settings(details, short_id_alias),
    }


def list_item(
    c: ContainerDetails, short_id_alias: bool, now: float | None = None
) -> dict[str, Any]:
    """Docker's ContainerSummary."""
    details, vm = c.details, c.details.vm
    networks = _networks(details, short_id_alias)
    return {
        "Id": vm.id,
        "Names": [f"/{vm.name}"],
        "Image": vm.image,
        "ImageID": c.image_id,
        "Command": " ".join(vm.spec.argv),
        "Created": rfc3339_nanos(vm.created) // NANOS,
        "Ports": _port_list(details),
        "Labels": vm.spec.labels,
        "State": docker_state(vm),
        "Status": status_text(c, now),
        "HostConfig": {"NetworkMode": _network_mode(details)},
        "NetworkSettings": {"Networks": networks},
        "Mounts": _mounts(details),
    }


def _seconds(stamp: str | None, default: float) -> float:
    return rfc3339_nanos(stamp) / NANOS if stamp else default


def _config(details: VmDetails) -> dict[str, Any]:
    vm, spec = details.vm, details.vm.spec
    return {
        "Hostname": spec.hostname or vm.name,
        "Domainname": "",
        "User": spec.user or "",
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
        "ExposedPorts": {port: {} for port in _exposed(details)} or None,
        "Tty": spec.tty,
        "OpenStdin": False,
        "StdinOnce": False,
        "Env": spec.env,
        "Cmd": spec.argv,  # what runs (hypr keeps the image's entrypoint and cmd merged)
        "Healthcheck": _healthcheck(spec.healthcheck),
        "Image": vm.image,
        "Volumes": {m.target: {} for m in spec.mounts if m.anonymous} or None,
        "WorkingDir": spec.workdir,
        "Entrypoint": None,
        "OnBuild": None,
        "Labels": spec.labels,
        "StopSignal": spec.stop_signal or "SIGTERM",  # the one the agent sends
        **({"StopTimeout": spec.stop_timeout} if spec.stop_timeout is not None else {}),
    }


def _healthcheck(check: HealthcheckSpec | None) -> dict[str, Any] | None:
    """Docker's HealthConfig: durations in nanoseconds."""
    if check is None:
        return None
    return {
        "Test": check.test,
        "Interval": int(check.interval * NANOS),
        "Timeout": int(check.timeout * NANOS),
        "Retries": check.retries,
        "StartPeriod": int(check.start_period * NANOS),
        "StartInterval": int(check.start_interval * NANOS),
    }


def _host_config(details: VmDetails) -> dict[str, Any]:
    spec = details.vm.spec
    bindings: dict[str, list[dict[str, str]]] = {}
    for fwd in details.forwards:
        if not fwd.ssh:
            host_ip = "" if str(fwd.host_ip) == "0.0.0.0" else str(fwd.host_ip)
            bindings.setdefault(f"{fwd.guest_port}/{fwd.protocol}", []).append(
                {"HostIp": host_ip, "HostPort": str(fwd.host_port)}
            )
    return {
        "Binds": [_bind(m) for m in spec.mounts if m.type != "tmpfs" and not m.anonymous] or None,
        "NetworkMode": _network_mode(details),
        "PortBindings": bindings,
        "RestartPolicy": {"Name": spec.restart, "MaximumRetryCount": spec.max_restarts},
        "AutoRemove": spec.auto_remove,
        "PublishAllPorts": False,
        "Memory": spec.memory_mib * MIB,
        "NanoCpus": spec.vcpus * NANOS,
        "Tmpfs": {m.target: "" for m in spec.mounts if m.type == "tmpfs"} or None,
        "ExtraHosts": spec.extra_hosts or None,
        "Privileged": False,
        "CapAdd": None,
        "CapDrop": None,
        "Dns": [],
        "DnsOptions": [],
        "DnsSearch": [],
        "Links": None,
        "VolumesFrom": None,
        "ReadonlyRootfs": False,
        "Runtime": "hypr",
        "LogConfig": {"Type": "json-file", "Config": {}},
    }


def _bind(mount: MountSpec) -> str:
    return f"{mount.source}:{mount.target}" + (":ro" if mount.read_only else "")


def _mounts(details: VmDetails) -> list[dict[str, Any]]:
    mounts = []
    for mount, path in zip(details.vm.spec.mounts, details.mount_paths, strict=True):
        item: dict[str, Any] = {"Type": mount.type}
        if mount.type == "volume":
            item |= {"Name": mount.source, "Source": path, "Driver": "local"}
        else:
            item["Source"] = path
        item |= {
            "Destination": mount.target,
            "Mode": "",
            "RW": not mount.read_only,
            "Propagation": "rprivate" if mount.type == "bind" else "",
        }
        mounts.append(item)
    return mounts


def _network_mode(details: VmDetails) -> str:
    return details.nics[0].network if details.nics else "none"


def _exposed(details: VmDetails) -> list[str]:
    published = {f"{f.guest_port}/{f.protocol}" for f in details.forwards if not f.ssh}
    ports = set(details.vm.spec.exposed_ports) | published
    return sorted(ports, key=lambda port: (int(port.partition("/")[0]), port))


def _networks(details: VmDetails, short_id_alias: bool) -> dict[str, dict[str, Any]]:
    vm = details.vm
    running = docker_state(vm) == "running"
    networks = {}
    for nic, record in zip(details.nics, vm.nics, strict=True):
        aliases = vm.spec.aliases[record.idx] if record.idx < len(vm.spec.aliases) else []
        wanted_ip = (
            vm.spec.requested_ips[record.idx] if record.idx < len(vm.spec.requested_ips) else None
        )
        live = running and nic.ip is not None
        shown = [*aliases, vm.short_id] if short_id_alias else aliases
        networks[nic.network] = {
            "IPAMConfig": {"IPv4Address": wanted_ip} if wanted_ip else None,
            "Links": None,
            "Aliases": list(dict.fromkeys(shown)) or None,
            "MacAddress": nic.mac,
            "DriverOpts": None,
            "NetworkID": nic.network_id,
            "EndpointID": endpoint_id(vm.id, record.idx) if live else "",
            "Gateway": str(nic.gateway) if live and nic.gateway else "",
            "IPAddress": str(nic.ip) if live else "",
            "IPPrefixLen": (nic.prefix_len or 0) if live else 0,
            "IPv6Gateway": "",
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "DNSNames": list(dict.fromkeys([vm.name, vm.short_id, *aliases])),
        }
    return networks


def _network_settings(details: VmDetails, short_id_alias: bool) -> dict[str, Any]:
    """Docker fills the top-level address fields from the default `bridge` network only."""
    networks = _networks(details, short_id_alias)
    bridge = networks.get("bridge", {})
    return {
        "Bridge": "",
        "SandboxID": "",
        "SandboxKey": "",
        "HairpinMode": False,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "Ports": _port_map(details),
        "SecondaryIPAddresses": None,
        "SecondaryIPv6Addresses": None,
        "EndpointID": bridge.get("EndpointID", ""),
        "Gateway": bridge.get("Gateway", ""),
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "IPAddress": bridge.get("IPAddress", ""),
        "IPPrefixLen": bridge.get("IPPrefixLen", 0),
        "IPv6Gateway": "",
        "MacAddress": bridge.get("MacAddress", ""),
        "Networks": networks,
    }


def _port_map(details: VmDetails) -> dict[str, list[dict[str, str]] | None]:
    """`{"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}], "81/tcp": null}` while the
    VM runs (an exposed port that is not published is null); `{}` otherwise."""
    if docker_state(details.vm) != "running":
        return {}
    ports: dict[str, list[dict[str, str]] | None] = {port: None for port in _exposed(details)}
    for fwd in details.forwards:
        if not fwd.ssh:
            key = f"{fwd.guest_port}/{fwd.protocol}"
            ports[key] = [
                *(ports.get(key) or []),
                {"HostIp": str(fwd.host_ip), "HostPort": str(fwd.host_port)},
            ]
    return ports


def _port_list(details: VmDetails) -> list[dict[str, Any]]:
    ports: list[dict[str, Any]] = []
    for key, bindings in _port_map(details).items():
        number, _, protocol = key.partition("/")
        for binding in bindings or [{}]:
            item: dict[str, Any] = {"PrivatePort": int(number), "Type": protocol}
            if binding:
                item |= {"IP": binding["HostIp"], "PublicPort": int(binding["HostPort"])}
            ports.append(item)
    return ports
