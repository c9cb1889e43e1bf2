"""What the cloud-config readers share: their one error, the notes they leave, type checks
that name the key."""

from __future__ import annotations

from typing import Any

# What a user data says that hypr does not apply: logged by hyprd and printed by the agent
# on the VM's console, never dropped without a word.
Notes = list[str]

_NAMES = {str: "a string", int: "an integer", bool: "true or false", dict: "a mapping",
          list: "a list", type(None): "empty"}  # fmt: skip


class UserDataError(ValueError):
    """User data that cannot be applied; the message is one line naming the key or the
    line of the YAML error."""


def expect(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    """`value` if it is of `kind`, else a UserDataError naming `where` (a bool is not an
    integer here, as YAML's `yes` is not a number)."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds):
        return value
    wanted = " or ".join(_NAMES.get(k, k.__name__) for k in kinds)
    raise UserDataError(f"{where} must be {wanted}, not {_shown(value)}")


def expect_strings(value: Any, where: str) -> list[str]:
    """A list of strings; a lone string counts as a list of one, as cloud-init takes it."""
    if isinstance(value, str):
        return [value]
    items = expect(value, list, where)
    return [expect(item, str, f"{where}[{i}]") for i, item in enumerate(items)]


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
