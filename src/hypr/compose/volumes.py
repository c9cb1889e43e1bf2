"""Compose volumes: the top-level `volumes:`, a service's `volumes:` (short and long syntax)
and `tmpfs:`, and their plan: volume keys turned into hypr volume names, host paths made
absolute, each mount checked by the rules of `hypr run --mount`.

The short syntax reads its options as `hypr run -v` does (hypr.volumes.mounts); what
compose adds is checked here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, field_validator, model_validator

from hypr.compose.base import ComposeModel, Labels, as_value_error, scalar
from hypr.errors import InvalidArgument
from hypr.state.vms import MountSpec, MountType
from hypr.units import parse_size
from hypr.volumes.mounts import (
    IGNORED_BIND_OPTIONS,
    check_target,
    check_unique_targets,
    mount_spec,
    parse_tmpfs,
)
from hypr.volumes.names import check_volume_name

VOLUME_LABEL = "com.docker.compose.volume"
# What a compose file's relative host paths are resolved by (`HostPaths.resolve`).
Resolve = Callable[[str], str]


class Volume(ComposeModel):
    """One entry of the top-level `volumes:`."""

    driver: str = "local"
    driver_opts: dict[str, str] = Field(default_factory=dict)
    external: bool = False
    name: str | None = None
    labels: Labels = Field(default_factory=dict)

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
        return {str(k): scalar(v) for k, v in value.items()}

    @model_validator(mode="after")
    def _external_alone(self) -> Volume:
        """An external volume exists already: hypr would make nothing of these keys."""
        if self.external:
            for key in ("driver", "driver_opts", "labels"):
                if key in self.model_fields_set:
                    raise ValueError(f"an external volume takes no {key}")
        return self


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
        return None if value is None else as_value_error(parse_size, value)

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
        return as_value_error(check_target, value)

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
    several of them joined by commas. Like `hypr run -v`, it accepts and ignores `z`, `Z`
    and the propagation modes."""
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
        elif mode not in IGNORED_BIND_OPTIONS:
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
    spec = as_value_error(lambda _: parse_tmpfs(target, options), item)
    return {
        "type": "tmpfs",
        "target": spec.target,
        "read_only": spec.read_only,
        "tmpfs": {"size": spec.tmpfs_size or None, "mode": spec.tmpfs_mode},
    }


# One entry of a service's `tmpfs:`, as the mount it means.
TmpfsEntry = Annotated[ServiceVolume, BeforeValidator(_short_tmpfs)]


def _file_mode(value: Any) -> int:
    """An int as YAML read it (`01777` is octal there), or octal digits as a string."""
    try:
        mode = value if isinstance(value, int) and not isinstance(value, bool) else int(value, 8)
    except (TypeError, ValueError):
        raise ValueError(f"invalid mode {value!r} (octal, e.g. 1777)") from None
    if not 0 <= mode <= 0o7777:
        raise ValueError(f"invalid mode {value!r} (octal, e.g. 1777)")
    return mode


@dataclass(frozen=True)
class VolumePlan:
    key: str  # the name in the file
    name: str  # the hypr volume's name
    external: bool
    labels: dict[str, str]
    options: dict[str, str]  # driver_opts, a relative `device` made absolute


@dataclass(frozen=True)
class MountPlan:
    """One mount of a service as `hypr run --mount` takes it: volume keys turned into
    volume names, host paths absolute."""

    type: MountType
    source: str | None  # a volume's name (None: a new anonymous one) or a host path
    target: str
    read_only: bool = False
    nocopy: bool = False
    tmpfs_size: int | None = None  # bytes
    tmpfs_mode: int | None = None
    create_host_path: bool = False  # bind: the CLI makes a missing source directory

    def to_dict(self) -> dict[str, Any]:
        """What is set, a tmpfs mode in octal as it is written (as `config` shows it)."""
        data = {k: v for k, v in asdict(self).items() if v}
        if self.tmpfs_mode is not None:
            data["tmpfs_mode"] = f"{self.tmpfs_mode:o}"
        return data


def plan_volumes(
    declared: dict[str, Volume], project: str, owner: dict[str, str], resolve: Resolve
) -> dict[str, VolumePlan]:
    """Compose's names: `<project>_<key>`, or `name:`; an external one is `name:` or its
    key, and gets no labels (hypr does not make it). `owner` are the labels that mark a
    volume as the project's."""
    plans = {}
    for key, vol in declared.items():
        name = vol.name or (key if vol.external else f"{project}_{key}")
        with _located(f"volumes.{key}"):
            check_volume_name(name)
        options = dict(vol.driver_opts)
        if "device" in options and "bind" in options.get("o", "").split(","):
            with _located(f"volumes.{key}.driver_opts.device"):
                options["device"] = resolve(options["device"])
        labels = {} if vol.external else {**vol.labels, **owner, VOLUME_LABEL: key}
        plans[key] = VolumePlan(key, name, vol.external, labels, options)
    return plans


def plan_mounts(
    service: str,
    volumes: list[ServiceVolume],
    tmpfs: list[ServiceVolume],
    declared: dict[str, VolumePlan],
    resolve: Resolve,
) -> list[MountPlan]:
    """A service's `volumes:` then its `tmpfs:`, checked together (one mount a target)."""
    entries = [(f"services.{service}.volumes[{i}]", v) for i, v in enumerate(volumes)]
    entries += [(f"services.{service}.tmpfs[{i}]", v) for i, v in enumerate(tmpfs)]
    mounts = [_mount(vol, where, declared, resolve) for where, vol in entries]
    with _located(f"services.{service}"):
        check_unique_targets(_checked(m) for m in mounts)
    return mounts


def _mount(
    vol: ServiceVolume, where: str, declared: dict[str, VolumePlan], resolve: Resolve
) -> MountPlan:
    source = vol.source
    if vol.type == "volume" and source is not None:
        if source not in declared:
            raise InvalidArgument(
                f"{where}: undefined volume {source!r} (declare it under the top-level volumes:)"
            )
        source = declared[source].name
    elif vol.type == "bind" and source is not None:
        with _located(where):
            source = resolve(source)
    mount = MountPlan(
        type=vol.type,
        source=source,
        target=vol.target,
        read_only=vol.read_only,
        nocopy=bool(vol.volume and vol.volume.nocopy),
        tmpfs_size=vol.tmpfs.size if vol.tmpfs else None,
        tmpfs_mode=vol.tmpfs.mode if vol.tmpfs else None,
        create_host_path=bool(vol.bind and vol.bind.create_host_path),
    )
    with _located(where):
        _checked(mount)
    return mount


def _checked(mount: MountPlan) -> MountSpec:
    """The mount as `hypr run --mount` would take it, by the same checks."""
    return mount_spec(
        mount.type,
        mount.source,
        mount.target,
        mount.read_only,
        mount.nocopy,
        mount.tmpfs_size,
        mount.tmpfs_mode,
    )


@contextlib.contextmanager
def _located(where: str) -> Iterator[None]:
    """Prefix a shared check's one-line error with the key it is about."""
    try:
        yield
    except InvalidArgument as exc:
        raise InvalidArgument(f"{where}: {exc.message}") from None
