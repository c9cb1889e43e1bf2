"""A compose document turned into a normalised project: names resolved, order computed.

The CLI reads the files (hypr.compose.loader: merging, `include`, `extends`, `.env` and
`env_file`s, interpolated with its own environment: only it has them), and sends the
merged document with the project directory and its user's home (`HostPaths`: relative
bind paths and `~` mean them); the daemon validates and normalises the result with the
same code, so API users get the same checks: hypr.compose.model validates the document,
hypr.compose.select picks the services (profiles, `--scale`), hypr.compose.volumes plans
volumes and mounts, and this module plans the rest (networks, services and their order).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import asdict, dataclass, field
from graphlib import CycleError, TopologicalSorter
from ipaddress import ip_address, ip_network
from typing import Any

from hypr.compose.model import ComposeFile, Network, Service, ServiceNetwork, validate_document
from hypr.compose.ports import check_replicated, replica_port
from hypr.compose.select import Selection, select_services
from hypr.compose.volumes import MountPlan, VolumePlan, plan_mounts, plan_volumes
from hypr.errors import InvalidArgument

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
NUMBER_LABEL = "com.docker.compose.container-number"
HASH_LABEL = "com.docker.compose.config-hash"
NETWORK_LABEL = "com.docker.compose.network"
DEFAULT_NETWORK = "default"


@dataclass(frozen=True)
class NetworkPlan:
    key: str  # the name in the file
    name: str  # the hypr network's name
    external: bool
    internal: bool
    subnet: str | None
    gateway: str | None
    labels: dict[str, str]


@dataclass(frozen=True)
class HostPaths:
    """What a compose file's relative paths are relative to: its directory, and for `~`
    the home of whoever ran `hypr compose`. Both come from the CLI: hyprd runs as root,
    maybe from elsewhere, and knows neither."""

    project_dir: str | None = None
    home: str | None = None

    def __post_init__(self) -> None:
        for what, path in (("project directory", self.project_dir), ("home", self.home)):
            if path is not None and not path.startswith("/"):
                raise InvalidArgument(f"the {what} {path!r} must be an absolute path")

    def resolve(self, path: str) -> str:
        """An absolute, normalised host path (whether it exists is the daemon's to say)."""
        if path.startswith("~"):
            head, _, rest = path.partition("/")
            if head != "~":
                raise InvalidArgument(f"{path}: only ~ (your own home) is supported")
            base, what = self.home, "your home directory"
        elif path.startswith("/"):
            base, rest, what = "/", path, ""
        else:
            base, rest, what = self.project_dir, path, "the project directory"
        if base is None:
            raise InvalidArgument(f"the relative path {path!r} needs {what}, which is unknown")
        return posixpath.normpath(posixpath.join(base, rest))


@dataclass(frozen=True)
class Attachment:
    network: str  # the hypr network's name
    aliases: list[str]
    ipv4_address: str | None


@dataclass(frozen=True)
class BuildPlan:
    """What a service's image is built from; the context is a host path or a URL."""

    context: str
    dockerfile: str | None
    args: dict[str, str | None]
    target: str | None
    labels: dict[str, str]


@dataclass(frozen=True)
class ServicePlan:
    name: str
    project: str
    image: str  # with `build`, the name the built image gets
    command: list[str] | None
    entrypoint: list[str] | None
    env: list[str]
    ports: list[str]
    networks: list[Attachment]
    depends_on: dict[str, str]  # service -> condition
    healthcheck: dict[str, Any] | None
    restart: str
    hostname: str | None
    vcpus: int
    memory_mib: int
    labels: dict[str, str]
    pull_policy: str = "missing"  # the CLI pulls by it before `up`; no part of the VM
    mounts: list[MountPlan] = field(default_factory=list)
    replicas: int = 1
    build: BuildPlan | None = None  # None: the image is pulled, not built
    expose: list[str] = field(default_factory=list)  # what the reverse proxy serves
    idle_timeout: float | None = None  # seconds (`x-idle-timeout`): it sleeps when unused

    def vm_name(self, number: int) -> str:
        """Replica `number`'s VM (from 1), as Docker Compose names containers."""
        return f"{self.project}-{self.name}-{number}"

    def ports_of(self, number: int) -> list[str]:
        """The `-p` specs of replica `number` (a host range gives each its own port)."""
        return [replica_port(spec, number) for spec in self.ports]

    @property
    def config_hash(self) -> str:
        """What `up` compares to decide whether a running VM still matches the file (its
        number and the count of replicas are no part of it)."""
        data = asdict(self)
        for key in ("pull_policy", "replicas", "project"):
            del data[key]
        for key in ("mounts", "build", "expose", "idle_timeout"):
            if not data[key]:
                del data[key]  # so that stacks made before them keep their hash
        # Replica 1's name and number, as before replicas: running stacks keep their hash.
        data["vm_name"] = self.vm_name(1)
        data["labels"] = {
            **{k: v for k, v in self.labels.items() if k != HASH_LABEL},
            NUMBER_LABEL: "1",
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Project:
    name: str
    services: list[ServicePlan]  # those to deploy, in dependency order
    networks: list[NetworkPlan]
    volumes: list[VolumePlan] = field(default_factory=list)  # those the services mount
    warnings: list[str] = field(default_factory=list)
    # Every service of the file, deployed or not (profiles, named services): a VM of
    # any of them is the stack's, not an orphan.
    known: list[str] = field(default_factory=list)
    oneoff: ServicePlan | None = None  # the service of `compose run`, not among `services`
    selection: Selection = field(default_factory=Selection)  # what it was loaded with
    # The interpolated document it was loaded from: what the daemon keeps to finish an
    # interrupted `up` (load_project of it gives this project again).
    document: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    paths: HostPaths = field(default_factory=HostPaths)  # what it was loaded with, too

    def service(self, name: str) -> ServicePlan:
        for service in self.services:
            if service.name == name:
                return service
        raise InvalidArgument(f"no such service: {name}")

    def to_dict(self) -> dict[str, Any]:
        data = {
            "name": self.name,
            "services": {s.name: _service_dict(s) for s in self.services},
            "networks": {n.key: _plan_dict(n) for n in self.networks},
        }
        if self.volumes:
            data["volumes"] = {v.key: _plan_dict(v) for v in self.volumes}
        return data

    def host_paths_to_create(self) -> list[str]:
        """Bind sources compose makes a directory when nothing is there."""
        return [
            m.source
            for s in self.services
            for m in s.mounts
            if m.create_host_path and m.source is not None
        ]


def load_project(
    document: dict[str, Any],
    name: str,
    paths: HostPaths | None = None,
    selection: Selection | None = None,
) -> Project:
    """Validate and normalise an interpolated compose document; `paths` resolves relative
    bind sources (without it, they are refused), `selection` picks the services."""
    paths = paths or HostPaths()
    selection = selection or Selection()
    model, warnings = validate_document(document)
    chosen, selected = select_services(model, selection)
    networks = _plan_networks(model, name)
    by_key = {n.key: n for n in networks}
    volumes = plan_volumes(model.volumes, name, {PROJECT_LABEL: name}, paths.resolve)
    plans = {}
    for s in chosen:
        svc = model.services[s]
        mounts = plan_mounts(s, svc.volumes, svc.tmpfs, volumes, paths.resolve)
        replicas = selection.scale.get(s, svc.replicas)
        plans[s] = _plan_service(s, svc, name, by_key, mounts, replicas, paths)
    for plan in plans.values():
        for dep in list(plan.depends_on):
            if dep not in model.services:
                raise InvalidArgument(f"services.{plan.name}.depends_on: undefined service {dep!r}")
            if dep not in plans:  # neither required nor chosen: left out, as Compose does
                del plan.depends_on[dep]
    order = dependency_order({s: list(p.depends_on) for s, p in plans.items()})
    oneoff = plans.get(selection.run) if selection.run else None
    used = {a.network for p in plans.values() for a in p.networks}
    mounted = {m.source for p in plans.values() for m in p.mounts if m.type == "volume"}
    return Project(
        name=name,
        services=[plans[s] for s in order if s != selection.run],
        networks=[n for n in networks if n.name in used or n.key != DEFAULT_NETWORK],
        volumes=[v for v in volumes.values() if v.name in mounted],
        warnings=warnings + selected,
        document=document,
        paths=paths,
        known=list(model.services),
        oneoff=oneoff,
        selection=selection,
    )


def dependency_order(graph: dict[str, list[str]]) -> list[str]:
    """Services ordered so that each comes after what it depends on, otherwise by name (the
    smallest such order, so it is stable); a cycle is an error shown as `a -> b -> a`."""
    sorter = TopologicalSorter({node: sorted(deps) for node, deps in sorted(graph.items())})
    try:
        sorter.prepare()
    except CycleError as exc:
        cycle = list(reversed(exc.args[1][:-1]))  # graphlib lists dependencies first
        start = cycle.index(min(cycle))
        cycle = cycle[start:] + cycle[:start]
        raise InvalidArgument(f"dependency cycle: {' -> '.join([*cycle, cycle[0]])}") from None
    order: list[str] = []
    ready: set[str] = set()
    while sorter.is_active():
        ready.update(sorter.get_ready())
        order.append(min(ready))
        ready.remove(order[-1])
        sorter.done(order[-1])
    return order


def _plan_networks(model: ComposeFile, project: str) -> list[NetworkPlan]:
    declared = dict(model.networks)
    declared.setdefault(DEFAULT_NETWORK, Network())
    plans = []
    for key, net in declared.items():
        pool = net.ipam.config[0] if net.ipam.config else None
        name = net.name or (key if net.external else f"{project}_{key}")
        plans.append(
            NetworkPlan(
                key=key,
                name=name,
                external=net.external,
                internal=net.internal,
                subnet=pool.subnet if pool else None,
                gateway=pool.gateway if pool else None,
                labels={**net.labels, PROJECT_LABEL: project, NETWORK_LABEL: key},
            )
        )
    return plans


def _plan_service(
    name: str,
    svc: Service,
    project: str,
    networks: dict[str, NetworkPlan],
    mounts: list[MountPlan],
    replicas: int,
    paths: HostPaths,
) -> ServicePlan:
    build = _plan_build(svc, paths)
    image = svc.image or (f"{project}-{name}" if build else None)
    if image is None:
        raise InvalidArgument(
            f"services.{name}.image: this key is required (a service needs an image or a build)"
        )
    if replicas > 1:
        for i, spec in enumerate(svc.ports):
            try:
                check_replicated(spec, replicas)
            except (ValueError, InvalidArgument) as exc:
                raise InvalidArgument(f"services.{name}.ports[{i}]: {exc}") from None
    limits = svc.deploy.resources.limits
    cpus = limits.cpus or svc.cpus or 1
    return ServicePlan(
        name=name,
        project=project,
        image=image,
        command=svc.command,
        entrypoint=svc.entrypoint,
        env=[f"{k}={v}" for k, v in svc.environment.items() if v is not None],
        ports=list(svc.ports),
        networks=_attachments(name, svc, networks, replicas),
        depends_on={dep: d.condition for dep, d in svc.depends_on.items()},
        healthcheck=svc.healthcheck.model_dump(exclude=set(svc.healthcheck.model_extra or {}))
        if svc.healthcheck and svc.healthcheck.enabled
        else None,
        restart=svc.restart,
        hostname=svc.hostname,
        vcpus=max(1, round(cpus)),
        memory_mib=limits.memory or svc.mem_limit or 256,
        labels={**svc.labels, PROJECT_LABEL: project, SERVICE_LABEL: name},
        pull_policy=svc.pull_policy,
        mounts=mounts,
        replicas=replicas,
        build=build,
        expose=list(svc.expose),
        idle_timeout=svc.idle_timeout,
    )


def _plan_build(svc: Service, paths: HostPaths) -> BuildPlan | None:
    """The build of a service, its context a host path (or a URL, left as it is)."""
    if svc.build is None:
        return None
    context = svc.build.context
    return BuildPlan(
        context=context if "://" in context else paths.resolve(context),
        dockerfile=svc.build.dockerfile,
        args=dict(svc.build.args),
        target=svc.build.target,
        labels=dict(svc.build.labels),
    )


def _attachments(
    name: str, svc: Service, networks: dict[str, NetworkPlan], replicas: int
) -> list[Attachment]:
    """The service's networks, each with the service's name among its DNS aliases (every
    replica has it, so the name answers with all of their addresses)."""
    attachments = []
    requested: dict[str, ServiceNetwork | None] = dict(svc.networks) or {DEFAULT_NETWORK: None}
    for key, options in requested.items():
        if key not in networks:
            raise InvalidArgument(f"services.{name}.networks: undefined network {key!r}")
        plan = networks[key]
        address = options.ipv4_address if options else None
        where = f"services.{name}.networks.{key}.ipv4_address"
        if address and replicas > 1:
            raise InvalidArgument(f"{where}: {replicas} replicas cannot share one address")
        if address and plan.subnet:
            try:
                inside = ip_address(address) in ip_network(plan.subnet, strict=False)
            except ValueError:
                raise InvalidArgument(f"{where}: invalid address {address!r}") from None
            if not inside:
                raise InvalidArgument(
                    f"{where}: {address} is not in the subnet {plan.subnet} of network {key}"
                )
        aliases = [name, *(options.aliases if options else [])]
        attachments.append(Attachment(plan.name, aliases, address))
    return attachments


def _service_dict(s: ServicePlan) -> dict[str, Any]:
    skipped = ("mounts", "project")
    data = {k: v for k, v in asdict(s).items() if v not in (None, [], {}) and k not in skipped}
    data["networks"] = {
        a.network: {k: v for k, v in asdict(a).items() if k != "network" and v} for a in s.networks
    }
    if s.mounts:
        data["volumes"] = [m.to_dict() for m in s.mounts]
    return data


def _plan_dict(n: NetworkPlan | VolumePlan) -> dict[str, Any]:
    """A network's or volume's plan as `config` shows it: its name, what is set."""
    return {k: v for k, v in asdict(n).items() if k != "key" and v not in (None, [], {})}
