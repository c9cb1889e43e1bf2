"""Typed models of the compose-spec keys hypr supports, normalised on the way in.

Every variant syntax (short and long port and volume syntax, list and map environment,
list and map networks and depends_on) is turned into one canonical form by a validator, so
the rest of hypr sees a single shape. Keys hypr does not know are kept aside and reported
as warnings that name them; keys that cannot be honoured safely are errors.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from hypr.checks import check_env, parse_restart
from hypr.compose.ports import PortMapping, parse_port
from hypr.errors import InvalidArgument
from hypr.state.vms import MountType
from hypr.units import memory_mib, parse_size
from hypr.volumes.mounts import check_target, parse_tmpfs

T = TypeVar("T")
PullPolicy = Literal["always", "missing", "never"]
Condition = Literal["service_started", "service_healthy", "service_completed_successfully"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)")
_DURATION_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any) -> float:
    """Compose durations (`1m30s`, `500ms`, `10`) to seconds."""
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    if not text:
        raise ValueError("empty duration")
    pos, total = 0, 0.0
    while pos < len(text):
        match = _DURATION.match(text, pos)
        if match is None:
            raise ValueError(f"invalid duration {text!r} (e.g. 30s, 1m30s, 500ms)")
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    return total


def _shared(check: Callable[[Any], T], value: Any) -> T:
    """Run a check shared with the CLI or the daemon; pydantic names the offending key
    only for a ValueError."""
    try:
        return check(value)
    except InvalidArgument as exc:
        raise ValueError(exc.message) from None


class ComposeModel(BaseModel):
    """Unknown keys are allowed here and collected as warnings by `unknown_keys`."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Healthcheck(ComposeModel):
    test: list[str] = Field(default_factory=list)
    interval: float = 30.0
    timeout: float = 30.0
    retries: int = 3
    start_period: float = 0.0
    start_interval: float = 5.0
    disable: bool = False

    @field_validator("test", mode="before")
    @classmethod
    def _test(cls, value: Any) -> list[str]:
        if isinstance(value, str):
            return ["CMD-SHELL", value]
        if not isinstance(value, list) or not value:
            raise ValueError("test must be a string or a non-empty list")
        if value[0] not in ("CMD", "CMD-SHELL", "NONE"):
            raise ValueError("a test list must start with CMD, CMD-SHELL or NONE")
        return [str(v) for v in value]

    @field_validator("interval", "timeout", "start_period", "start_interval", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> float:
        return parse_duration(value)

    @property
    def enabled(self) -> bool:
        return not self.disable and bool(self.test) and self.test[0] != "NONE"

    def argv(self) -> list[str]:
        """The command to exec in the guest."""
        kind, *rest = self.test
        return ["/bin/sh", "-c", rest[0]] if kind == "CMD-SHELL" else rest


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
        return None if value is None else _shared(memory_mib, value)


class Resources(ComposeModel):
    limits: ResourceLimits = Field(default_factory=ResourceLimits)


class Deploy(ComposeModel):
    resources: Resources = Field(default_factory=Resources)


class EnvFile(ComposeModel):
    path: str
    required: bool = True


class VolumeOptions(ComposeModel):
    nocopy: bool = False
    subpath: str | None = None

    @field_validator("subpath")
    @classmethod
    def _subpath(cls, value: str | None) -> None:
        """Ignoring it would mount the whole volume where a part of it was asked for."""
        if value is not None:
            raise ValueError("not supported by hypr")
        return None


class BindOptions(ComposeModel):
    # Compose makes a missing bind source a directory: the short syntax always, the long
    # syntax when asked. The CLI makes it (as the user, on the user's side), not hyprd.
    create_host_path: bool = False


class TmpfsOptions(ComposeModel):
    size: int | None = None  # bytes
    mode: int | None = None

    @field_validator("size", mode="before")
    @classmethod
    def _size(cls, value: Any) -> int | None:
        return None if value is None else _shared(parse_size, value)

    @field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, value: Any) -> int | None:
        return None if value is None else _file_mode(value)


class ServiceVolume(ComposeModel):
    """One mount of a service in the long syntax; the short syntax (`data:/db:ro`) and
    `tmpfs:` entries are turned into it before validation, as compose does."""

    type: MountType
    source: str | None = None
    target: str
    read_only: bool = False
    volume: VolumeOptions | None = None
    bind: BindOptions | None = None
    tmpfs: TmpfsOptions | None = None

    @model_validator(mode="before")
    @classmethod
    def _short_syntax(cls, value: Any) -> Any:
        return _short_volume(value) if isinstance(value, str) else value

    @field_validator("target")
    @classmethod
    def _target(cls, value: str) -> str:
        return _shared(check_target, value)

    @model_validator(mode="after")
    def _consistent(self) -> ServiceVolume:
        """What compose adds to `--mount`'s rules (hypr.volumes.mounts checks those)."""
        for kind in ("volume", "bind", "tmpfs"):
            if getattr(self, kind) is not None and kind != self.type:
                raise ValueError(f"`{kind}` options apply only to type {kind}")
        if self.type == "volume" and self.source and is_host_path(self.source):
            raise ValueError(
                f"source {self.source!r} is a path: use type bind for a host directory"
            )
        return self


def is_host_path(source: str) -> bool:
    """Compose's rule for the short syntax: a path, not a volume's key."""
    return source.startswith(("/", ".", "~"))


def _short_volume(text: str) -> dict[str, Any]:
    """`[SOURCE:]TARGET[:MODE]` to the long syntax; MODE is `ro`, `rw`, `nocopy` or
    several of them joined by commas."""
    parts = text.split(":")
    if len(parts) == 1:
        return {"type": "volume", "target": text}  # anonymous
    if len(parts) > 3 or not parts[0]:
        raise ValueError(f"invalid volume {text!r}: expected [SOURCE:]TARGET[:ro|rw]")
    source, target, *modes = parts
    kind = "bind" if is_host_path(source) else "volume"
    long: dict[str, Any] = {"type": kind, "source": source, "target": target}
    if kind == "bind":
        long["bind"] = {"create_host_path": True}
    for mode in modes[0].split(",") if modes else []:
        if mode in ("ro", "rw"):
            long["read_only"] = mode == "ro"
        elif mode == "nocopy" and kind == "volume":
            long["volume"] = {"nocopy": True}
        else:
            raise ValueError(
                f"invalid volume {text!r}: unknown mode {mode!r} (use ro, rw; nocopy for a volume)"
            )
    return long


def _short_tmpfs(item: Any) -> dict[str, Any]:
    """`TARGET[:size=64m,mode=1777,ro]`, read as `hypr run --tmpfs` reads it, to the long
    syntax."""
    if not isinstance(item, str):
        raise ValueError("expected a path such as /run or /run:size=64m")
    target, _, options = item.partition(":")
    spec = _shared(lambda _: parse_tmpfs(target, options), item)
    return {
        "type": "tmpfs",
        "target": spec.target,
        "read_only": spec.read_only,
        "tmpfs": {"size": spec.tmpfs_size or None, "mode": spec.tmpfs_mode},
    }


def _file_mode(value: Any) -> int:
    """An int as YAML read it (`01777` is octal there), or octal digits as a string."""
    try:
        mode = value if isinstance(value, int) and not isinstance(value, bool) else int(value, 8)
    except (TypeError, ValueError):
        raise ValueError(f"invalid mode {value!r} (octal, e.g. 1777)") from None
    if not 0 <= mode <= 0o7777:
        raise ValueError(f"invalid mode {value!r} (octal, e.g. 1777)")
    return mode


class Service(ComposeModel):
    image: str
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
    labels: dict[str, str] = Field(default_factory=dict)
    pull_policy: PullPolicy = "missing"
    volumes: list[ServiceVolume] = Field(default_factory=list)
    tmpfs: list[Annotated[ServiceVolume, BeforeValidator(_short_tmpfs)]] = Field(
        default_factory=list
    )

    @field_validator("pull_policy", mode="before")
    @classmethod
    def _pull_policy(cls, value: Any) -> str:
        """Compose's `if_not_present` is `missing`; `build` needs a builder hypr lacks."""
        text = str(value)
        if text == "if_not_present":
            return "missing"
        if text not in ("always", "missing", "never"):
            raise ValueError(
                f"{text!r} is not supported (use always, missing or never"
                + ("; hypr builds no images" if text == "build" else "")
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
            result = {str(k): None if v is None else _scalar(v) for k, v in value.items()}
        else:
            raise ValueError("expected a list of KEY=VALUE or a mapping")
        for key, val in result.items():
            _shared(check_env, [f"{key}={val or ''}"])
        return result

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> dict[str, str]:
        if isinstance(value, list):
            return {k: v for k, _, v in (str(item).partition("=") for item in value)}
        if isinstance(value, dict):
            return {str(k): _scalar(v) for k, v in value.items()}
        raise ValueError("expected a list of key=value or a mapping")

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
        return None if value is None else _shared(memory_mib, value)

    @field_validator("restart", mode="before")
    @classmethod
    def _restart(cls, value: Any) -> str:
        text = "no" if value is False else str(value)
        _shared(parse_restart, text)
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
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("driver")
    @classmethod
    def _driver(cls, value: str) -> str:
        if value != "bridge":
            raise ValueError(f"network driver {value!r} is not supported (use bridge)")
        return value

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> dict[str, str]:
        return Service._labels(value)

    @model_validator(mode="after")
    def _one_pool(self) -> Network:
        if len(self.ipam.config) > 1:
            raise ValueError("only one ipam config entry per network is supported")
        return self


class Volume(ComposeModel):
    driver: str = "local"
    driver_opts: dict[str, str] = Field(default_factory=dict)
    external: bool = False
    name: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _legacy_external(cls, value: Any) -> Any:
        """The old `external: {name: x}` is `external: true, name: x`."""
        if isinstance(value, dict) and isinstance(value.get("external"), dict):
            value = {**value, "external": True, "name": value["external"].get("name")}
        return value

    @field_validator("driver")
    @classmethod
    def _driver(cls, value: str) -> str:
        if value != "local":
            raise ValueError(f"volume driver {value!r} is not supported (use local)")
        return value

    @field_validator("driver_opts", mode="before")
    @classmethod
    def _driver_opts(cls, value: Any) -> dict[str, str]:
        if not isinstance(value, dict):
            raise ValueError("expected a mapping")
        return {str(k): _scalar(v) for k, v in value.items()}

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> dict[str, str]:
        return Service._labels(value)

    @model_validator(mode="after")
    def _external_alone(self) -> Volume:
        """An external volume exists already: hypr would make nothing of these keys."""
        if self.external:
            for key in ("driver", "driver_opts", "labels"):
                if key in self.model_fields_set:
                    raise ValueError(f"an external volume takes no {key}")
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


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def unknown_keys(model: BaseModel, path: str = "") -> list[str]:
    """Paths of every key that a model kept aside because hypr does not support it."""
    found = [f"{path}.{key}" if path else key for key in (model.model_extra or {})]
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
