"""A service's `healthcheck`, and compose's durations (`1m30s`), which it is the one key
hypr supports to use."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator

from hypr.compose.base import ComposeModel

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
