"""Compose `ports`: short (`"8080:80"`) and long (`{target: 80, published: 8080}`) syntax,
both turned into the `-p` spec that `hypr run` takes.

Compose adds one form to `-p`'s: a range of host ports onto one guest port
(`8080-8081:80`), which is how a replicated service publishes a port: replica N takes the
Nth host port of the range.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from hypr.errors import HyprError
from hypr.network.ports import FREE_PORT, parse_publish

PortMapping = str
_HOST_RANGE = re.compile(
    r"^(?P<head>(?:[^:]*:)?)(?P<first>\d+)-(?P<last>\d+)(?P<tail>:\d+(?:/\w+)?)$"
)


class LongPort(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: int | str
    published: int | str | None = None
    host_ip: str | None = None
    protocol: str = "tcp"
    mode: str = "host"
    name: str | None = None
    app_protocol: str | None = None

    @field_validator("protocol")
    @classmethod
    def _protocol(cls, value: str) -> str:
        if value not in ("tcp", "udp"):
            raise ValueError(f"protocol must be tcp or udp, not {value!r}")
        return value


def parse_port(value: Any) -> str:
    """The `-p` spec of one compose port entry."""
    if isinstance(value, bool):
        raise ValueError('expected a port spec such as "8080:80"')
    if isinstance(value, int | str):
        text = str(value).strip()
        _check(text)
        return text
    if isinstance(value, dict):
        port = LongPort.model_validate(value)
        if port.published is None:
            raise ValueError("a long-syntax port needs `published`")
        host = f"{port.host_ip}:" if port.host_ip else ""
        text = f"{host}{port.published}:{port.target}/{port.protocol}"
        _check(text)
        return text
    raise ValueError('expected a port spec such as "8080:80"')


def _check(spec: str) -> None:
    """Validate with the parser `hypr run -p` uses, so both accept the same specs (and
    compose's host range onto one guest port, checked by its first port)."""
    match = _HOST_RANGE.match(spec)
    if match and int(match["last"]) < int(match["first"]):
        raise ValueError(f"invalid port spec {spec!r}: range runs backwards")
    try:
        parse_publish(replica_port(spec, 1))
    except HyprError as exc:
        raise ValueError(exc.message) from None


def replica_port(spec: str, number: int) -> str:
    """The `-p` spec that replica `number` (from 1) publishes for a service's spec."""
    match = _HOST_RANGE.match(spec)
    if match is None:
        return spec
    return f"{match['head']}{int(match['first']) + number - 1}{match['tail']}"


def check_replicated(spec: str, replicas: int) -> None:
    """Refuse a spec that `replicas` replicas cannot all publish: a fixed host port (only
    one VM can have it), or a host range shorter than the number of replicas."""
    match = _HOST_RANGE.match(spec)
    if match is not None:
        count = int(match["last"]) - int(match["first"]) + 1
        if count < replicas:
            raise ValueError(
                f"{spec!r} has {count} host ports for {replicas} replicas; "
                "give one host port per replica"
            )
        return
    fixed = sorted({f.host_port for f in parse_publish(spec) if f.host_port != FREE_PORT})
    if fixed:
        guest = spec.rsplit(":", 1)[-1]
        example = f' (such as "{fixed[0]}-{fixed[0] + replicas - 1}:{guest}")'
        raise ValueError(
            f"{spec!r} publishes the fixed host port {fixed[0]}, which only one of the "
            f"{replicas} replicas can have; publish one guest port on a range of "
            f"{replicas} host ports" + ("" if "-" in guest else example) + ", or on none"
        )
