"""A compose file turned into a normalised project: names resolved, order computed.

The CLI finds the file, reads `.env` and `env_file`s and interpolates with its own
environment (only it has them), and sends the file's directory and its user's home along
(`HostPaths`: relative bind paths and `~` mean them); the daemon validates and normalises
the result with the same code, so API users get the same checks: hypr.compose.model
validates the document, hypr.compose.volumes plans its volumes and mounts, and this module
plans the rest (networks, services and their order).
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
from dataclasses import asdict, dataclass, field
from graphlib import CycleError, TopologicalSorter
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

import yaml

from hypr.compose.interpolate import interpolate, read_env_file
from hypr.compose.model import ComposeFile, Network, Service, ServiceNetwork, validate_document
from hypr.compose.volumes import MountPlan, VolumePlan, plan_mounts, plan_volumes
from hypr.errors import InvalidArgument

DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
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
class ServicePlan:
    name: str
    vm_name: str
    image: str
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

    @property
    def config_hash(self) -> str:
        """What `up` compares to decide whether a running VM still matches the file."""
        data = asdict(self)
        del data["pull_policy"]
        if not self.mounts:
            del data["mounts"]  # so that stacks made before volumes keep their hash
        data["labels"] = {k: v for k, v in self.labels.items() if k != HASH_LABEL}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Project:
    name: str
    services: list[ServicePlan]  # in dependency order
    networks: list[NetworkPlan]
    volumes: list[VolumePlan] = field(default_factory=list)  # those the services mount
    warnings: list[str] = field(default_factory=list)
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


def find_compose_file(path: str | None, cwd: Path) -> Path:
    if path:
        file = Path(path)
        if not file.is_file():
            raise InvalidArgument(f"compose file {path} not found")
        return file.resolve()
    for name in DEFAULT_FILES:
        if (cwd / name).is_file():
            return (cwd / name).resolve()
    raise InvalidArgument(
        f"no compose file in {cwd} (looked for {', '.join(DEFAULT_FILES)}); use -f FILE"
    )


def project_name(explicit: str | None, document: dict[str, Any], directory: Path) -> str:
    """As Docker Compose: -p, then COMPOSE_PROJECT_NAME, the file's `name`, the directory."""
    raw = explicit or os.environ.get("COMPOSE_PROJECT_NAME") or document.get("name")
    name = str(raw) if raw else re.sub(r"[^a-z0-9_-]", "", directory.name.lower())
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name):
        raise InvalidArgument(
            f"invalid project name {name!r}: use lowercase letters, digits, '-' and '_'"
        )
    return name


def read_document(file: Path, env: dict[str, str]) -> dict[str, Any]:
    """Parse and interpolate a compose file; inline `env_file`s into `environment`."""
    try:
        raw = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"{file.name}: invalid YAML: {exc}".splitlines()[0]) from None
    if not isinstance(raw, dict):
        raise InvalidArgument(f"{file.name}: the top level must be a mapping")
    dotenv = file.parent / ".env"
    variables = {**(read_env_file(dotenv) if dotenv.is_file() else {}), **env}
    document: dict[str, Any] = interpolate(raw, variables)
    for name, service in (document.get("services") or {}).items():
        if isinstance(service, dict) and "env_file" in service:
            service["environment"] = _merged_env_files(file.parent, name, service)
    return document


def _merged_env_files(base: Path, name: str, service: dict[str, Any]) -> dict[str, Any]:
    entries = service.pop("env_file")
    entries = [entries] if isinstance(entries, str | dict) else entries
    merged: dict[str, Any] = {}
    for entry in entries:
        path = entry if isinstance(entry, str) else entry.get("path", "")
        required = True if isinstance(entry, str) else entry.get("required", True)
        full = base / path
        if full.is_file():
            merged.update(read_env_file(full))
        elif required:
            raise InvalidArgument(f"services.{name}.env_file: {path} not found")
    own = service.get("environment") or {}
    if isinstance(own, list):
        own = dict((k, v if sep else None) for k, sep, v in (str(i).partition("=") for i in own))
    return {**merged, **own}


def load_project(document: dict[str, Any], name: str, paths: HostPaths | None = None) -> Project:
    """Validate and normalise an interpolated compose document; `paths` resolves relative
    bind sources (without it, they are refused)."""
    paths = paths or HostPaths()
    model, warnings = validate_document(document)
    networks = _plan_networks(model, name)
    by_key = {n.key: n for n in networks}
    volumes = plan_volumes(model.volumes, name, {PROJECT_LABEL: name}, paths.resolve)
    plans = {
        s: _plan_service(
            s, svc, name, by_key, plan_mounts(s, svc.volumes, svc.tmpfs, volumes, paths.resolve)
        )
        for s, svc in model.services.items()
    }
    for plan in plans.values():
        for dep in plan.depends_on:
            if dep not in plans:
                raise InvalidArgument(f"services.{plan.name}.depends_on: undefined service {dep!r}")
    order = dependency_order({s: list(p.depends_on) for s, p in plans.items()})
    used = {a.network for p in plans.values() for a in p.networks}
    mounted = {m.source for p in plans.values() for m in p.mounts if m.type == "volume"}
    return Project(
        name=name,
        services=[plans[s] for s in order],
        networks=[n for n in networks if n.name in used or n.key != DEFAULT_NETWORK],
        volumes=[v for v in volumes.values() if v.name in mounted],
        warnings=warnings,
        document=document,
        paths=paths,
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
) -> ServicePlan:
    attachments = []
    requested: dict[str, ServiceNetwork | None] = dict(svc.networks) or {DEFAULT_NETWORK: None}
    for key, options in requested.items():
        if key not in networks:
            raise InvalidArgument(f"services.{name}.networks: undefined network {key!r}")
        plan = networks[key]
        address = options.ipv4_address if options else None
        if address and plan.subnet:
            try:
                inside = ip_address(address) in ip_network(plan.subnet, strict=False)
            except ValueError:
                raise InvalidArgument(
                    f"services.{name}.networks.{key}.ipv4_address: invalid address {address!r}"
                ) from None
            if not inside:
                raise InvalidArgument(
                    f"services.{name}.networks.{key}.ipv4_address: {address} is not in "
                    f"the subnet {plan.subnet} of network {key}"
                )
        aliases = [name, *(options.aliases if options else [])]
        attachments.append(Attachment(plan.name, aliases, address))
    limits = svc.deploy.resources.limits
    cpus = limits.cpus or svc.cpus or 1
    memory = limits.memory or svc.mem_limit or 256
    vm_name = f"{project}-{name}-1"
    labels = {**svc.labels, PROJECT_LABEL: project, SERVICE_LABEL: name, NUMBER_LABEL: "1"}
    return ServicePlan(
        name=name,
        vm_name=vm_name,
        image=svc.image,
        command=svc.command,
        entrypoint=svc.entrypoint,
        env=[f"{k}={v}" for k, v in svc.environment.items() if v is not None],
        ports=list(svc.ports),
        networks=attachments,
        depends_on={dep: d.condition for dep, d in svc.depends_on.items()},
        healthcheck=svc.healthcheck.model_dump(exclude=set(svc.healthcheck.model_extra or {}))
        if svc.healthcheck and svc.healthcheck.enabled
        else None,
        restart=svc.restart,
        hostname=svc.hostname,
        vcpus=max(1, round(cpus)),
        memory_mib=memory,
        labels=labels,
        pull_policy=svc.pull_policy,
        mounts=mounts,
    )


def _service_dict(s: ServicePlan) -> dict[str, Any]:
    data = {k: v for k, v in asdict(s).items() if v not in (None, [], {}) and k != "mounts"}
    data["networks"] = {
        a.network: {k: v for k, v in asdict(a).items() if k != "network" and v} for a in s.networks
    }
    if s.mounts:
        data["volumes"] = [m.to_dict() for m in s.mounts]
    return data


def _plan_dict(n: NetworkPlan | VolumePlan) -> dict[str, Any]:
    """A network's or volume's plan as `config` shows it: its name, what is set."""
    return {k: v for k, v in asdict(n).items() if k != "key" and v not in (None, [], {})}
