"""What the compose models share: their base class, and the value parsers that more than
one of them (services, networks, volumes) uses, so that each key is read one way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict

from hypr.errors import InvalidArgument

T = TypeVar("T")


class ComposeModel(BaseModel):
    """Unknown keys are allowed here and collected as warnings by `unknown_keys`."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


def as_value_error(check: Callable[[Any], T], value: Any) -> T:
    """Run a check shared with the CLI or the daemon; pydantic names the offending key
    only for a ValueError."""
    try:
        return check(value)
    except InvalidArgument as exc:
        raise ValueError(exc.message) from None


def scalar(value: Any) -> str:
    """A YAML scalar as compose's string: booleans are `true` and `false`, not Python's."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _labels(value: Any) -> dict[str, str]:
    if isinstance(value, list):
        return {k: v for k, _, v in (str(item).partition("=") for item in value)}
    if isinstance(value, dict):
        return {str(k): scalar(v) for k, v in value.items()}
    raise ValueError("expected a list of key=value or a mapping")


# `labels:` of a service, network or volume: a list of key=value or a mapping.
Labels = Annotated[dict[str, str], BeforeValidator(_labels)]
