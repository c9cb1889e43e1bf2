"""Which services of a file a command deploys, and how many replicas each: profiles,
services named on the command line, `--scale`.

A service without `profiles` is always enabled; one with profiles only when one of them is
active (`--profile`, `COMPOSE_PROFILES`; `*` activates all) or when it is named on the
command line, which activates its profiles. The services an enabled one depends on (and
requires) are enabled with it. Naming services deploys those and what they depend on
(`--no-deps`: those alone); the rest of the stack is left as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hypr.compose.model import ComposeFile
from hypr.errors import InvalidArgument


@dataclass(frozen=True)
class Selection:
    profiles: tuple[str, ...] = ()
    services: tuple[str, ...] = ()  # named on the command line; () is every enabled one
    scale: Mapping[str, int] = field(default_factory=dict)  # --scale SERVICE=N
    no_deps: bool = False
    # `compose run SERVICE`: that service is planned (its networks are made) but gets a
    # one-off VM instead of its replicas; `services` is then (SERVICE,).
    run: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """As the daemon records it, to finish an interrupted `up` the same way."""
        return {
            "profiles": list(self.profiles),
            "services": list(self.services),
            "scale": dict(self.scale),
            "no_deps": self.no_deps,
            "run": self.run,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Selection:
        return cls(
            profiles=tuple(data.get("profiles") or ()),
            services=tuple(data.get("services") or ()),
            scale=dict(data.get("scale") or {}),
            no_deps=bool(data.get("no_deps")),
            run=data.get("run"),
        )


def select_services(model: ComposeFile, selection: Selection) -> tuple[list[str], list[str]]:
    """The names of the services to deploy (in file order) and warnings."""
    services = model.services
    for name in (*selection.services, *selection.scale):
        if name not in services:
            raise InvalidArgument(f"no such service: {name}")
    active = set(selection.profiles)
    for name in selection.services:
        active |= set(services[name].profiles)
    enabled = {
        name
        for name, service in services.items()
        if not service.profiles or "*" in active or active & set(service.profiles)
    }
    roots = set(selection.services) or enabled
    chosen = set(roots) if selection.no_deps else _with_dependencies(model, roots)
    known = {p for service in services.values() for p in service.profiles}
    warnings = [
        f"no service has the profile {p!r}"
        for p in selection.profiles
        if p != "*" and p not in known
    ]
    return [name for name in services if name in chosen], warnings


def _with_dependencies(model: ComposeFile, roots: set[str]) -> set[str]:
    """`roots` and, transitively, the services they require (`required: false` ones only
    if they are among `roots` anyway)."""
    chosen = set(roots)
    todo = list(roots)
    while todo:
        for dep, spec in model.services[todo.pop()].depends_on.items():
            if spec.required and dep in model.services and dep not in chosen:
                chosen.add(dep)
                todo.append(dep)
    return chosen


def parse_scale(values: tuple[str, ...]) -> dict[str, int]:
    """`--scale SERVICE=N` values as a mapping."""
    scale: dict[str, int] = {}
    for value in values:
        name, sep, count = value.partition("=")
        if not sep or not name or not count.isdigit():
            raise InvalidArgument(f"--scale {value}: expected SERVICE=NUMBER")
        scale[name] = int(count)
    return scale
