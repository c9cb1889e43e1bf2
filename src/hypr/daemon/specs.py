"""Request validation: a `RunRequest` and its image become the `VmSpec` that is stored, or
the request is refused with one line before anything is claimed."""

from __future__ import annotations

from hypr.checks import (
    HOST_GATEWAY,
    check_env,
    check_no_nul,
    check_user,
    parse_extra_host,
    parse_restart,
    signal_number,
)
from hypr.daemon.requests import HealthcheckRequest, RunRequest
from hypr.errors import InvalidArgument
from hypr.guest.spec import GuestNic
from hypr.images.store import Image
from hypr.network.names import check_hostname
from hypr.state.vms import HealthcheckSpec, MountSpec, VmSpec
from hypr.units import MIN_MEMORY_MIB
from hypr.vmm.qemu import check_devices
from hypr.volumes.mounts import (
    check_target,
    check_unique_targets,
    mount_order,
    mount_spec,
    parse_tmpfs,
    parse_volume_flag,
)

MAX_MEMORY_MIB = 1024 * 1024
MAX_VCPUS = 64


def check_request_text(req: RunRequest) -> None:
    """Refuse NUL bytes anywhere they would reach the guest or the database; a VM created
    with one could never start."""
    check_no_nul("image", [req.image])
    check_no_nul("name", [req.name, req.hostname])
    check_no_nul("command", req.command or [])
    check_no_nul("entrypoint", req.entrypoint or [])
    check_no_nul("environment variable", req.env)
    check_no_nul("workdir", [req.workdir])
    check_no_nul("user", [req.user, req.stop_signal])
    check_no_nul("label", [*req.labels, *req.labels.values()])
    check_no_nul("port", req.ports)
    check_no_nul("volume", [*req.volumes, *req.tmpfs, *req.tmpfs.values()])
    check_no_nul("mount", [v for m in req.mounts for v in (m.source, m.target)])
    check_no_nul("extra host", req.extra_hosts)
    check_no_nul("kernel", [req.kernel])
    check_no_nul("user data", [req.user_data])
    check_no_nul("healthcheck", req.healthcheck.test if req.healthcheck else [])
    for attachment in req.networks or []:
        check_no_nul("network", [attachment.network, attachment.ip, attachment.mac])
        check_no_nul("alias", attachment.aliases)


def build_spec(req: RunRequest, image: Image) -> VmSpec:
    """Validate what the user asked for and merge in the image's defaults."""
    check_request_text(req)
    if req.memory_mib < MIN_MEMORY_MIB:
        raise InvalidArgument(
            f"memory {req.memory_mib} MiB is below the {MIN_MEMORY_MIB} MiB "
            "the guest kernel needs to boot"
        )
    if req.memory_mib > MAX_MEMORY_MIB:
        raise InvalidArgument(f"memory {req.memory_mib} MiB is too large")
    if not 1 <= req.vcpus <= MAX_VCPUS:
        raise InvalidArgument(f"cpus must be between 1 and {MAX_VCPUS}")
    restart = parse_restart(req.restart)
    check_env(req.env)
    if req.user is not None:
        check_user(req.user)
    if req.stop_signal is not None:
        signal_number(req.stop_signal)
    for host in req.extra_hosts:
        parse_extra_host(host)
    argv = workload_argv(req, image)
    if not argv:
        raise InvalidArgument(f"no command given and image {image.reference} has none")
    attachments = req.attachments
    mounts = requested_mounts(req, image)
    check_devices(len(image.layers), len(attachments), any(m.type != "tmpfs" for m in mounts))
    return VmSpec(
        argv=argv,
        env=merge_env(image.config.env, req.env),
        workdir=req.workdir or image.config.workdir,
        vcpus=req.vcpus,
        memory_mib=req.memory_mib,
        restart=restart.policy,
        requested_ips=[attachment.ip for attachment in attachments],
        aliases=[list(attachment.aliases) for attachment in attachments],
        hostname=check_hostname(req.hostname) if req.hostname else None,
        max_restarts=restart.max_restarts,
        dhcp=req.dhcp,
        auto_remove=req.auto_remove,
        labels={**image.config.labels, **req.labels},
        user=req.user if req.user is not None else image.config.user or None,
        stop_signal=req.stop_signal or image.config.stop_signal or None,
        exposed_ports=exposed_ports(image.config.exposed_ports, req.expose),
        mounts=mounts,
        healthcheck=healthcheck_spec(req.healthcheck),
        stop_timeout=req.stop_timeout,
        tty=req.tty,
        extra_hosts=list(req.extra_hosts),
        user_data=req.user_data,
        idle_timeout=req.idle_timeout,
        kernel=req.kernel,
    )


def exposed_ports(image_ports: list[str], expose: list[str]) -> list[str]:
    """The image's ExposedPorts and `--expose`, as "80/tcp"."""
    ports = list(image_ports)
    for text in expose:
        port, _, proto = text.partition("/")
        if not port.isdigit() or not 1 <= int(port) <= 65535 or proto not in ("", "tcp", "udp"):
            raise InvalidArgument(f"invalid exposed port {text!r}: expected PORT[/tcp|udp]")
        spec = f"{int(port)}/{proto or 'tcp'}"
        if spec not in ports:
            ports.append(spec)
    return ports


def healthcheck_spec(check: HealthcheckRequest | None) -> HealthcheckSpec | None:
    """Docker's test forms: ["CMD", argv...] or ["CMD-SHELL", "one command line"]."""
    if check is None:
        return None
    kind = check.test[0]
    if kind not in ("CMD", "CMD-SHELL") or (kind == "CMD-SHELL" and len(check.test) != 2):
        raise InvalidArgument(
            'invalid healthcheck test: use ["CMD", ARG...] or ["CMD-SHELL", COMMAND]'
        )
    return HealthcheckSpec(
        test=list(check.test),
        interval=check.interval,
        timeout=check.timeout,
        retries=check.retries,
        start_period=check.start_period,
        start_interval=check.start_interval,
    )


def requested_mounts(req: RunRequest, image: Image) -> list[MountSpec]:
    """`-v`, `--mount` and `--tmpfs` together, plus an anonymous volume for each of the
    image's VOLUMEs that no mount covers; parents first. Bind sources are checked on the
    host by the caller, volumes are named and made at create."""
    mounts = [parse_volume_flag(text) for text in req.volumes]
    mounts += [
        mount_spec(m.type, m.source, m.target, m.read_only, m.nocopy, m.tmpfs_size, m.tmpfs_mode)
        for m in req.mounts
    ]
    mounts += [parse_tmpfs(target, options) for target, options in req.tmpfs.items()]
    check_unique_targets(mounts)
    taken = {m.target for m in mounts}
    for volume in image.config.volumes:
        target = check_target(volume)
        if target not in taken:
            mounts.append(MountSpec("volume", "", target, copy_up=True, anonymous=True))
            taken.add(target)
    return mount_order(mounts)


def workload_argv(req: RunRequest, image: Image) -> list[str]:
    """Docker's rules: `--entrypoint` replaces the image's Entrypoint and drops its Cmd; a
    command after the image replaces Cmd (and follows whichever entrypoint is in force)."""
    if req.entrypoint is not None:
        return [*req.entrypoint, *(req.command or [])]
    return [*image.config.entrypoint, *(req.command or image.config.cmd)]


def merge_env(image_env: list[str], env: list[str]) -> list[str]:
    """The image's environment with `-e` applied by key: a key given again replaces the
    image's value where it stood, a new one comes after."""
    merged = {entry.partition("=")[0]: entry for entry in image_env}
    for entry in env:
        merged[entry.partition("=")[0]] = entry
    return list(merged.values())


def guest_hosts(spec: VmSpec, nics: list[GuestNic]) -> list[tuple[str, str]]:
    """--add-host entries as (address, name), for a boot; `host-gateway` is the gateway of
    the VM's first NIC that has one (the host's address on that network)."""
    gateway = next((str(nic.gateway) for nic in nics if nic.gateway is not None), None)
    hosts = []
    for entry in spec.extra_hosts:
        name, address = parse_extra_host(entry)
        if address == HOST_GATEWAY:
            if gateway is None:
                raise InvalidArgument(f"--add-host {entry}: the VM has no network with a gateway")
            address = gateway
        hosts.append((address, name))
    return hosts
