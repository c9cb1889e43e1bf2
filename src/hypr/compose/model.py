"""Typed models of the compose-spec keys hypr supports, normalised on the way in.

Every variant syntax (short and long port syntax, list and map environment, list and map
networks and depends_on) is turned into one canonical form by a validator, so the rest of
hypr sees a single shape. Keys hypr does not know are kept aside and reported as warnings
that name them (extensions, `x-*`, are ignored silently, as Compose ignores them); keys
that cannot be honoured safely are errors. The volume models (and their short syntax) are
in hypr.compose.volumes.
"""

from __future__ import annotations

import re
import shlex
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from hypr.checks import check_env, parse_restart
from hypr.compose.base import ComposeModel, Labels, as_value_error, scalar
from hypr.compose.health import Healthcheck
from hypr.compose.ports import PortMapping, parse_port
from hypr.compose.volumes import ServiceVolume, TmpfsEntry, Volume
from hypr.errors import InvalidArgument
from hypr.units import go_duration, memory_mib

PullPolicy = Literal["always", "missing", "never"]
Condition = Literal["service_started", "service_healthy", "service_completed_successfully"]
# Keys that would silently change what a service can do if ignored.
UNSAFE_SERVICE_KEYS = (
    "network_mode",
    "privileged",
    "pid",
    "ipc",
    "userns_mode",
    "devices",
    "cap_add",
)


class ServiceNetwork(ComposeModel):
    aliases: list[str] = Field(default_factory=list)
    ipv4_address: str | None = None


class Dependency(ComposeModel):
    condition: Condition = "service_started"
    required: bool = True
    restart: bool = False


class ResourceLimits(ComposeModel):
    cpus: float | None = None
    memory: int | None = None

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, value: Any) -> int | None:
        return None if value is None else as_value_error(memory_mib, value)


class Resources(ComposeModel):
    limits: ResourceLimits = Field(default_factory=ResourceLimits)


class Deploy(ComposeModel):
    resources: Resources = Field(default_factory=Resources)
    replicas: int | None = Field(default=None, ge=0)


class Build(ComposeModel):
    """`build:`, short (the context) or long; the CLI builds it (hypr.cli.compose_build)
    into the service's image before `up`."""

    context: str = "."
    dockerfile: str | None = None
    args: dict[str, str | None] = Field(default_factory=dict)
    target: str | None = None
    labels: Labels = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _short_syntax(cls, value: Any) -> Any:
        return {"context": value} if isinstance(value, str) else value

    @field_validator("args", mode="before")
    @classmethod
    def _args(cls, value: Any) -> dict[str, str | None]:
        """`[A=1, B]` or `{A: 1, B: null}`; B without a value comes from the environment."""
        if isinstance(value, list):
            return {k: v if sep else None for k, sep, v in (str(i).partition("=") for i in value)}
        if isinstance(value, dict):
            return {str(k): None if v is None else scalar(v) for k, v in value.items()}
        raise ValueError("expected a list of KEY=VALUE or a mapping")


class EnvFile(ComposeModel):
    path: str
    required: bool = True


class Service(ComposeModel):
    image: str | None = None  # required unless `build` makes it (checked when planned)
    build: Build | None = None
    profiles: list[str] = Field(default_factory=list)
    scale: int | None = Field(default=None, ge=0)
    command: list[str] | None = None
    entrypoint: list[str] | None = None
    environment: dict[str, str | None] = Field(default_factory=dict)
    env_file: list[EnvFile] = Field(default_factory=list)
    ports: list[Annotated[PortMapping, BeforeValidator(parse_port)]] = Field(default_factory=list)
    networks: dict[str, ServiceNetwork] = Field(default_factory=dict)
    depends_on: dict[str, Dependency] = Field(default_factory=dict)
    healthcheck: Healthcheck | None = None
    restart: str = "no"
    hostname: str | None = None
    cpus: float | None = None
    mem_limit: int | None = None
    deploy: Deploy = Field(default_factory=Deploy)
    labels: Labels = Field(default_factory=dict)
    pull_policy: PullPolicy = "missing"
    volumes: list[ServiceVolume] = Field(default_factory=list)
    tmpfs: list[TmpfsEntry] = Field(default_factory=list)
    expose: list[str] = Field(default_factory=list)  # "80", "8000-8001", "53/udp"
    # hypr's extension: sleep after this long without use (Go's duration syntax)
    idle_timeout: float | None = Field(default=None, alias="x-idle-timeout")

    @field_validator("expose", mode="before")
    @classmethod
    def _expose(cls, value: Any) -> list[str]:
        if not isinstance(value, list):
            raise ValueError("expected a list of ports")
        ports = [scalar(item) for item in value]
        for port in ports:
            if not re.fullmatch(r"\d+(-\d+)?(/(tcp|udp))?", port):
                raise ValueError(f"invalid port {port!r}: PORT[-PORT][/tcp|udp]")
        return ports

    @field_validator("idle_timeout", mode="before")
    @classmethod
    def _idle_timeout(cls, value: Any) -> float | None:
        if value is None:
            return None
        seconds = go_duration(scalar(value)) / 1e9
        if seconds <= 0:
            raise ValueError("must be a positive duration such as 30s or 5m")
        return seconds

    @field_validator("profiles")
    @classmethod
    def _profiles(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", name):
                raise ValueError(f"invalid profile name {name!r}")
        return value

    @model_validator(mode="after")
    def _one_replica_count(self) -> Service:
        replicas = self.deploy.replicas
        if self.scale is not None and replicas is not None and self.scale != replicas:
            raise ValueError("scale and deploy.replicas differ; set only one")
        return self

    @property
    def replicas(self) -> int:
        """`deploy.replicas`, or the older `scale`; one if neither is set."""
        for count in (self.deploy.replicas, self.scale):
            if count is not None:
                return count
        return 1

    @field_validator("pull_policy", mode="before")
    @classmethod
    def _pull_policy(cls, value: Any) -> str:
        """Compose's `if_not_present` is `missing`; its `build` (build every time) is
        `hypr compose up --build` here."""
        text = str(value)
        if text == "if_not_present":
            return "missing"
        if text not in ("always", "missing", "never"):
            raise ValueError(
                f"{text!r} is not supported (use always, missing or never"
                + ("; to build every time, use up --build" if text == "build" else "")
                + ")"
            )
        return text

    @field_validator("command", "entrypoint", mode="before")
    @classmethod
    def _argv(cls, value: Any) -> list[str] | None:
        if value is None:
            return None
        if isinstance(value, str):
            return shlex.split(value)
        if isinstance(value, list):
            return [str(v) for v in value]
        raise ValueError("expected a string or a list of strings")

    @field_validator("environment", mode="before")
    @classmethod
    def _environment(cls, value: Any) -> dict[str, str | None]:
        if isinstance(value, list):
            pairs = [str(item).partition("=") for item in value]
            result = {key: val if sep else None for key, sep, val in pairs}
        elif isinstance(value, dict):
            result = {str(k): None if v is None else scalar(v) for k, v in value.items()}
        else:
            raise ValueError("expected a list of KEY=VALUE or a mapping")
        for key, val in result.items():
            as_value_error(check_env, [f"{key}={val or ''}"])
        return result

    @field_validator("env_file", mode="before")
    @classmethod
    def _env_file(cls, value: Any) -> list[Any]:
        items = [value] if isinstance(value, str | dict) else value
        return [{"path": item} if isinstance(item, str) else item for item in items]

    @field_validator("ports", "volumes", mode="before")
    @classmethod
    def _list(cls, value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise ValueError("expected a list")
        return value

    @field_validator("tmpfs", mode="before")
    @classmethod
    def _tmpfs(cls, value: Any) -> list[Any]:
        """`tmpfs: /run` or a list of `TARGET[:size=...,mode=...]`, as `--tmpfs` takes."""
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise ValueError("expected a path or a list of paths")
        return items

    @field_validator("networks", "depends_on", mode="before")
    @classmethod
    def _names_or_mapping(cls, value: Any) -> dict[str, Any]:
        """`[a, b]` means `{a: {}, b: {}}`, as in the compose spec."""
        if isinstance(value, list):
            return {str(name): {} for name in value}
        if isinstance(value, dict):
            return {str(k): v or {} for k, v in value.items()}
        raise ValueError("expected a list of names or a mapping")

    @field_validator("mem_limit", mode="before")
    @classmethod
    def _mem_limit(cls, value: Any) -> int | None:
        return None if value is None else as_value_error(memory_mib, value)

    @field_validator("restart", mode="before")
    @classmethod
    def _restart(cls, value: Any) -> str:
        text = "no" if value is False else str(value)
        as_value_error(parse_restart, text)
        return text


class IpamPool(ComposeModel):
    subnet: str | None = None
    gateway: str | None = None


class Ipam(ComposeModel):
    driver: str | None = None
    config: list[IpamPool] = Field(default_factory=list)


class Network(ComposeModel):
    driver: str = "bridge"
    internal: bool = False
    ipam: Ipam = Field(default_factory=Ipam)
    external: bool = False
    name: str | None = None
    labels: Labels = Field(default_factory=dict)

    @field_validator("driver")
    @classmethod
    def _driver(cls, value: str) -> str:
        if value != "bridge":
            raise ValueError(f"network driver {value!r} is not supported (use bridge)")
        return value

    @model_validator(mode="after")
    def _one_pool(self) -> Network:
        if len(self.ipam.config) > 1:
            raise ValueError("only one ipam config entry per network is supported")
        return self


class ComposeFile(ComposeModel):
    name: str | None = None
    services: dict[str, Service]
    networks: dict[str, Network] = Field(default_factory=dict)
    volumes: dict[str, Volume] = Field(default_factory=dict)

    @field_validator("networks", "volumes", mode="before")
    @classmethod
    def _declarations(cls, value: Any) -> dict[str, Any]:
        """`key:` alone (null) declares it with every default."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError("expected a mapping")
        return {str(k): v or {} for k, v in value.items()}


def unknown_keys(model: BaseModel, path: str = "") -> list[str]:
    """Paths of every key that a model kept aside because hypr does not support it."""
    extra = [key for key in model.model_extra or {} if not key.startswith("x-")]
    found = [f"{path}.{key}" if path else key for key in extra]
    for name in type(model).model_fields:
        value = getattr(model, name)
        where = f"{path}.{name}" if path else name
        items: list[tuple[str, Any]] = []
        if isinstance(value, BaseModel):
            items = [(where, value)]
        elif isinstance(value, dict):
            items = [(f"{where}.{k}", v) for k, v in value.items()]
        elif isinstance(value, list):
            items = [(f"{where}[{i}]", v) for i, v in enumerate(value)]
        for sub_path, item in items:
            if isinstance(item, BaseModel):
                found += unknown_keys(item, sub_path)
    return found


def validate_document(document: dict[str, Any]) -> tuple[ComposeFile, list[str]]:
    """An interpolated compose document as models, with a warning for each key hypr
    ignores; an unsafe key or a bad value is an error that names its path."""
    services = document.get("services")
    if not isinstance(services, dict) or not services:
        raise InvalidArgument("services: a compose file needs at least one service")
    for service_name, service in services.items():
        for key in UNSAFE_SERVICE_KEYS:
            if isinstance(service, dict) and key in service:
                raise InvalidArgument(
                    f"services.{service_name}.{key}: cannot be honoured safely by hypr"
                )
    try:
        model = ComposeFile.model_validate(document)
    except ValidationError as exc:
        raise InvalidArgument(_first_error(exc)) from None
    warnings = [
        f"{key}: not supported by hypr yet, ignored"
        for key in unknown_keys(model)
        if key != "version"
    ]
    return model, warnings


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    path = ""
    for part in error["loc"]:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "missing":
        message = "this key is required"
    elif error["type"] == "extra_forbidden":
        message = "unknown key"
    return f"{path}: {message}"
