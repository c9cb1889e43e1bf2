"""Compose `ports`: short (`"8080:80"`) and long (`{target: 80, published: 8080}`) syntax,
both turned into the `-p` spec that `hypr run` takes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from hypr.errors import HyprError
from hypr.network.ports import parse_publish

PortMapping = str


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
    """Validate with the parser `hypr run -p` uses, so both accept exactly the same specs."""
    try:
        parse_publish(spec)
    except HyprError as exc:
        raise ValueError(exc.message) from None
