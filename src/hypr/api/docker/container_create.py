"""Docker's container create body, and its translation into hypr's `RunRequest`.

Unknown fields are ignored, as Docker ignores them. A field that hypr cannot honour is
refused with a 400 that names it, before anything is claimed; cgroup knobs that a VM has no
use for (its resources are its vCPUs and its memory) are accepted and named in the answer's
`Warnings`, which the docker CLI prints.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from pydantic import ConfigDict, Field, ValidationError

from hypr.api.docker.endpoints import EndpointSettings
from hypr.api.models import DockerBody
from hypr.daemon.requests import HealthcheckRequest, MountRequest, NetworkAttachment, RunRequest
from hypr.errors import InvalidArgument
from hypr.network.manager import DEFAULT_NETWORK
from hypr.units import MIB, MIN_MEMORY_MIB
from hypr.volumes.mounts import parse_volume_flag

NANOS = 1_000_000_000
DEFAULT_MODES = ("", "default", "bridge")  # NetworkMode: hypr's default network, `bridge`
_NEUTRAL: tuple[Any, ...] = (None, 0, -1, "", False, [], {})


def _shared_namespace(mode: Any) -> bool:
    return isinstance(mode, str) and (mode == "host" or mode.startswith("container:"))


_OWN_KERNEL = "each VM has its own kernel, nothing of the host's or another VM's to share"
# HostConfig fields that would have to change what the workload sees to be honoured.
REFUSED: dict[str, tuple[Callable[[Any], bool], str]] = {
    "Privileged": (bool, "a VM passes no host devices, and its workload is root in its kernel"),
    "CapAdd": (bool, "capabilities cannot be changed: the workload has its kernel's full set"),
    "CapDrop": (bool, "capabilities cannot be changed: the workload has its kernel's full set"),
    "Devices": (bool, "host devices cannot be passed to a VM"),
    "DeviceRequests": (bool, "host devices (GPUs) cannot be passed to a VM"),
    "DeviceCgroupRules": (bool, "host devices cannot be passed to a VM"),
    "PidMode": (_shared_namespace, _OWN_KERNEL),
    "IpcMode": (_shared_namespace, _OWN_KERNEL),
    "UTSMode": (_shared_namespace, _OWN_KERNEL),
    "UsernsMode": (_shared_namespace, _OWN_KERNEL),
    "VolumesFrom": (bool, "use the same volumes with Binds or Mounts instead"),
    "Links": (bool, "legacy links are not supported: VMs find each other by name and alias"),
    "ReadonlyRootfs": (bool, "a read-only root filesystem is not supported"),
    "Sysctls": (bool, "sysctls of the VM's kernel cannot be set"),
    "SecurityOpt": (bool, "seccomp, AppArmor, SELinux and no-new-privileges do not apply"),
    "GroupAdd": (bool, "extra groups for the workload are not supported"),
    "Ulimits": (bool, "resource limits (ulimits) for the workload are not supported"),
    "Runtime": (lambda v: v not in ("", None, "hypr", "runc"), "hypr is the only runtime"),
    "Isolation": (lambda v: v not in ("", None, "default"), "a VM is its own isolation"),
    "VolumeDriver": (lambda v: v not in ("", None, "local"), "only the local volume driver"),
    "Dns": (bool, "a VM resolves through its network's DNS server (which forwards names it "
            "does not know to the host's resolvers); per-container DNS is not supported"),
    "DnsSearch": (bool, "per-container DNS settings are not supported"),
    "DnsOptions": (bool, "per-container DNS settings are not supported"),
}  # fmt: skip
# cgroup knobs: accepted, with a warning, as a kernel without the controller makes Docker do.
WARNED = (
    "CpuShares", "CpuPeriod", "CpuQuota", "CpuRealtimePeriod", "CpuRealtimeRuntime",
    "CpusetCpus", "CpusetMems", "CpuPercent", "BlkioWeight", "BlkioWeightDevice",
    "BlkioDeviceReadBps", "BlkioDeviceWriteBps", "BlkioDeviceReadIOps", "BlkioDeviceWriteIOps",
    "IOMaximumIOps", "IOMaximumBandwidth", "MemoryReservation", "MemorySwap",
    "MemorySwappiness", "KernelMemory", "OomKillDisable", "OomScoreAdj", "PidsLimit", "ShmSize",
)  # fmt: skip
NO_STDIN = "a VM's workload has no stdin (it reads /dev/null): use `docker exec -i` instead"


class HealthConfig(DockerBody):
    Test: list[str] | None = None
    Interval: int | None = None  # nanoseconds; 0 or none: Docker's default
    Timeout: int | None = None
    Retries: int | None = None
    StartPeriod: int | None = None
    StartInterval: int | None = None


class PortBinding(DockerBody):
    HostIp: str | None = ""
    HostPort: str | None = ""


class RestartPolicyBody(DockerBody):
    Name: str | None = ""
    MaximumRetryCount: int | None = 0


class DriverConfigBody(DockerBody):
    Name: str | None = ""


class VolumeOptionsBody(DockerBody):
    NoCopy: bool | None = False
    DriverConfig: DriverConfigBody | None = None


class TmpfsOptionsBody(DockerBody):
    SizeBytes: int | None = None
    Mode: int | None = None


class Mount(DockerBody):
    Type: str = "volume"
    Source: str | None = None
    Target: str
    ReadOnly: bool | None = False
    VolumeOptions: VolumeOptionsBody | None = None
    TmpfsOptions: TmpfsOptionsBody | None = None


class HostConfigBody(DockerBody):
    """The fields hypr uses; the others stay in `model_extra` for the refusal tables."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    Binds: list[str] | None = None
    PortBindings: dict[str, list[PortBinding] | None] | None = None
    PublishAllPorts: bool | None = False
    Mounts: list[Mount] | None = None
    Tmpfs: dict[str, str] | None = None
    NetworkMode: str | None = ""
    RestartPolicy: RestartPolicyBody | None = None
    AutoRemove: bool | None = False
    Memory: int | None = 0
    NanoCpus: int | None = 0
    CpuCount: int | None = 0
    ExtraHosts: list[str] | None = None
    LogConfig: dict[str, Any] | None = None


class NetworkingConfigBody(DockerBody):
    EndpointsConfig: dict[str, EndpointSettings | None] | None = None


class ContainerCreate(DockerBody):
    """POST /containers/create: Docker's ContainerConfig with HostConfig and
    NetworkingConfig."""

    Image: str = Field(min_length=1)
    Cmd: list[str] | str | None = None
    Entrypoint: list[str] | str | None = None
    Env: list[str] | None = None
    WorkingDir: str | None = ""
    User: str | None = ""
    Labels: dict[str, str] | None = None
    ExposedPorts: dict[str, Any] | None = None
    Volumes: dict[str, Any] | None = None
    Hostname: str | None = ""
    Tty: bool | None = False
    OpenStdin: bool | None = False
    AttachStdin: bool | None = False
    StdinOnce: bool | None = False
    StopSignal: str | None = ""
    StopTimeout: int | None = None
    Healthcheck: HealthConfig | None = None
    MacAddress: str | None = ""  # before API 1.44, the first network's MAC
    NetworkDisabled: bool | None = False
    HostConfig: HostConfigBody | None = None
    NetworkingConfig: NetworkingConfigBody | None = None


def run_request(body: ContainerCreate, name: str | None) -> tuple[RunRequest, list[str]]:
    """The RunRequest of a create, and the warnings for what it ignores; what hypr cannot
    honour raises InvalidArgument naming the field."""
    try:
        return _run_request(body, name)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error.get("loc", ()))
        raise InvalidArgument(f"invalid container config: {where}: {error.get('msg')}") from None


def _run_request(body: ContainerCreate, name: str | None) -> tuple[RunRequest, list[str]]:
    host = body.HostConfig or HostConfigBody()
    warnings = _check_host_config(host)
    for field in ("OpenStdin", "AttachStdin", "StdinOnce"):
        if getattr(body, field):
            raise InvalidArgument(f"{field} is not supported: {NO_STDIN}")
    restart = _restart(host.RestartPolicy)
    if host.AutoRemove and restart != "no":
        raise InvalidArgument(
            f"conflicting options: AutoRemove and RestartPolicy {restart} (a VM removed "
            "when it exits cannot be restarted)"
        )
    ports, publish_all = _ports(host, body.ExposedPorts or {})
    fields: dict[str, Any] = {
        "image": body.Image,
        "name": name.removeprefix("/") if name else None,
        "command": _strings(body.Cmd),
        "entrypoint": _entrypoint(body.Entrypoint),
        "env": list(body.Env or []),
        "networks": _networks(body, host),
        "restart": restart,
        "workdir": body.WorkingDir or None,
        "user": body.User or None,
        "stop_signal": body.StopSignal or None,
        "stop_timeout": body.StopTimeout,
        "auto_remove": bool(host.AutoRemove),
        "labels": dict(body.Labels or {}),
        "hostname": body.Hostname or None,
        "ports": ports,
        "publish_all": publish_all,
        "mounts": [_mount(m) for m in host.Mounts or []],
        "tmpfs": dict(host.Tmpfs or {}),
        "healthcheck": _healthcheck(body.Healthcheck),
        "tty": bool(body.Tty),
        "extra_hosts": list(host.ExtraHosts or []),
        "pull": "never",
        "start": False,
    }
    fields["volumes"] = _volumes(host, fields["mounts"], fields["tmpfs"], body.Volumes or {})
    if host.Memory:
        fields["memory_mib"] = _memory_mib(host.Memory)
    cpus = max(math.ceil((host.NanoCpus or 0) / NANOS), host.CpuCount or 0)
    if cpus:
        fields["vcpus"] = cpus
    return RunRequest(**fields), warnings


def _check_host_config(host: HostConfigBody) -> list[str]:
    """Refuse what cannot be honoured; the warnings for what is ignored."""
    given = host.model_dump()
    for field, (is_set, reason) in REFUSED.items():
        value = given.get(field)
        if value not in _NEUTRAL and is_set(value):
            raise InvalidArgument(f"HostConfig.{field} is not supported: {reason}")
    warnings = [
        f"hypr ignores HostConfig.{field}: a VM's resources are its vCPUs and its memory"
        for field in WARNED
        if given.get(field) not in _NEUTRAL
    ]
    driver = (host.LogConfig or {}).get("Type") or ""
    if driver not in ("", "json-file", "local"):
        warnings.append(f"hypr ignores the log driver {driver}: a VM's log is its console")
    return warnings


def _strings(value: list[str] | str | None) -> list[str] | None:
    """Docker's strslice: a JSON string is a list of one; [] or none: the image's."""
    if value is None or value == []:
        return None
    return [value] if isinstance(value, str) else list(value)


def _entrypoint(value: list[str] | str | None) -> list[str] | None:
    """`--entrypoint ""` arrives as [""]: no entrypoint at all (not the image's)."""
    entrypoint = _strings(value)
    return [] if entrypoint == [""] else entrypoint


def _restart(policy: RestartPolicyBody | None) -> str:
    name = (policy.Name if policy else "") or "no"
    count = (policy.MaximumRetryCount if policy else 0) or 0
    return f"{name}:{count}" if name == "on-failure" and count > 0 else name


def _memory_mib(size: int) -> int:
    if size < MIN_MEMORY_MIB * MIB:
        raise InvalidArgument(
            f"HostConfig.Memory {size} bytes is below the {MIN_MEMORY_MIB} MiB that a VM "
            "needs to boot"
        )
    return math.ceil(size / MIB)


def _networks(body: ContainerCreate, host: HostConfigBody) -> list[NetworkAttachment] | None:
    """NetworkMode is the first network (`default` and `bridge`: hypr's `bridge`), each
    other endpoint of EndpointsConfig one more; `none` (or NetworkDisabled): no NIC."""
    mode = host.NetworkMode or ""
    endpoints = dict((body.NetworkingConfig or NetworkingConfigBody()).EndpointsConfig or {})
    if mode == "host" or mode.startswith("container:"):
        raise InvalidArgument(f"HostConfig.NetworkMode {mode} is not supported: {_OWN_KERNEL}")
    if mode == "none" or body.NetworkDisabled:
        if set(endpoints) - {"none"}:
            raise InvalidArgument("a container with NetworkMode none cannot join other networks")
        return []
    first = DEFAULT_NETWORK if mode in DEFAULT_MODES else mode
    names = {mode, first, *(DEFAULT_MODES if first == DEFAULT_NETWORK else ())}
    configs = [endpoints.pop(key) for key in list(endpoints) if key in names]
    primary = next((config for config in configs if config is not None), None)
    attachments = [_attachment(first, primary, body.MacAddress or None)]
    attachments += [_attachment(net, config, None) for net, config in endpoints.items()]
    return attachments


def _attachment(
    network: str, config: EndpointSettings | None, mac: str | None
) -> NetworkAttachment:
    config = config or EndpointSettings()
    ipam = config.ipam
    if ipam.IPv6Address or ipam.LinkLocalIPs:
        raise InvalidArgument(f"network {network}: IPv6 and link-local addresses are not supported")
    if config.Links:
        raise InvalidArgument(f"network {network}: {REFUSED['Links'][1]}")
    return config.attachment(network, mac)


def _ports(host: HostConfigBody, exposed: dict[str, Any]) -> tuple[list[str], bool]:
    """PortBindings as `-p` specs (no HostPort: a free one); PublishAllPorts adds the
    config's ExposedPorts on free ports (the image's come with `publish_all`)."""
    specs = []
    bindings = host.PortBindings or {}
    for key, entries in bindings.items():
        port, _, protocol = key.partition("/")
        for entry in entries or []:
            address = entry.HostIp or ""
            if ":" in address:
                raise InvalidArgument(f"port {key}: IPv6 host addresses are not supported")
            host_port = entry.HostPort or ""
            spec = f"{port}/{protocol or 'tcp'}"
            if address not in ("", "0.0.0.0"):
                spec = f"{address}:{host_port}:{spec}"
            elif host_port:
                spec = f"{host_port}:{spec}"
            specs.append(spec)
    if host.PublishAllPorts:
        specs += [key if "/" in key else f"{key}/tcp" for key in exposed if key not in bindings]
    return specs, bool(host.PublishAllPorts)


def _mount(mount: Mount) -> MountRequest:
    if mount.Type not in ("bind", "volume", "tmpfs"):
        raise InvalidArgument(
            f"HostConfig.Mounts type {mount.Type} is not supported: use bind, volume or tmpfs"
        )
    volume = mount.VolumeOptions or VolumeOptionsBody()
    driver = volume.DriverConfig.Name if volume.DriverConfig else ""
    if driver not in ("", None, "local"):
        raise InvalidArgument(f"volume driver {driver} is not supported: only local")
    tmpfs = mount.TmpfsOptions or TmpfsOptionsBody()
    return MountRequest(
        type=mount.Type,  # type: ignore[arg-type]
        source=mount.Source or None,
        target=mount.Target,
        read_only=bool(mount.ReadOnly),
        nocopy=bool(volume.NoCopy),
        tmpfs_size=tmpfs.SizeBytes or None,
        tmpfs_mode=tmpfs.Mode,
    )


def _volumes(
    host: HostConfigBody,
    mounts: list[MountRequest],
    tmpfs: dict[str, str],
    declared: dict[str, Any],
) -> list[str]:
    """Binds as given, and an anonymous volume for each path of Config.Volumes (`-v /data`)
    that no bind, mount or tmpfs covers."""
    binds = list(host.Binds or [])
    taken = {parse_volume_flag(b).target for b in binds} | {m.target for m in mounts}
    taken |= set(tmpfs)
    return binds + [path for path in declared if path.rstrip("/") not in taken]


def _healthcheck(check: HealthConfig | None) -> HealthcheckRequest | None:
    """Docker's Healthcheck in seconds; no test, or ["NONE"], is none (hypr's images have
    no HEALTHCHECK to inherit)."""
    if check is None or not check.Test or check.Test[0] == "NONE":
        return None
    kind, arguments = check.Test[0], check.Test[1:]
    if (
        kind not in ("CMD", "CMD-SHELL")
        or not arguments
        or (kind == "CMD-SHELL" and len(arguments) > 1)
    ):
        raise InvalidArgument(
            'invalid Healthcheck.Test: use ["CMD", ARG...], ["CMD-SHELL", COMMAND] or ["NONE"]'
        )

    def seconds(nanos: int | None, default: float) -> float:
        return nanos / NANOS if nanos else default

    return HealthcheckRequest(
        test=check.Test,
        interval=seconds(check.Interval, 30.0),
        timeout=seconds(check.Timeout, 30.0),
        retries=check.Retries or 3,
        start_period=seconds(check.StartPeriod, 0.0),
        start_interval=seconds(check.StartInterval, 5.0),
    )
