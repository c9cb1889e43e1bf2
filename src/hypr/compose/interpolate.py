"""Variable interpolation as Docker Compose does it, and `.env` files.

Supported: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`,
`${VAR?error}`, `${VAR:+replacement}`, `${VAR+replacement}`, and `$$` for a literal `$`.
Defaults may themselves contain `${...}`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hypr.errors import InvalidArgument

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class InterpolationError(InvalidArgument):
    pass


def interpolate(value: Any, env: Mapping[str, str], path: str = "") -> Any:
    """Interpolate every string in a parsed YAML document (keys are left alone); mappings
    and lists keep their type (compose's `!override` tag is one)."""
    if isinstance(value, str):
        return interpolate_string(value, env, path)
    if isinstance(value, dict):
        return type(value)(
            (k, interpolate(v, env, f"{path}.{k}" if path else str(k))) for k, v in value.items()
        )
    if isinstance(value, list):
        return type(value)(interpolate(v, env, f"{path}[{i}]") for i, v in enumerate(value))
    return value


def interpolate_string(text: str, env: Mapping[str, str], path: str = "") -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$":
            out.append(char)
            i += 1
            continue
        nxt = text[i + 1 : i + 2]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "{":
            end = _closing_brace(text, i + 2, path)
            out.append(_substitute(text[i + 2 : end], env, path))
            i = end + 1
        elif match := _NAME.match(text, i + 1):
            out.append(env.get(match.group(), ""))
            i = match.end()
        else:
            raise InterpolationError(f"{path}: invalid interpolation format in {text!r}")
    return "".join(out)


def _closing_brace(text: str, start: int, path: str) -> int:
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise InterpolationError(f"{path}: unterminated ${{ in {text!r}")


def _substitute(expr: str, env: Mapping[str, str], path: str) -> str:
    match = _NAME.match(expr)
    if match is None:
        raise InterpolationError(f"{path}: invalid interpolation format ${{{expr}}}")
    name, rest = match.group(), expr[match.end() :]
    if not rest:
        return env.get(name, "")
    for op in (":-", ":?", ":+", "-", "?", "+"):
        if rest.startswith(op):
            arg = interpolate_string(rest[len(op) :], env, path)
            is_set = name in env
            is_nonempty = bool(env.get(name))
            present = is_nonempty if op.startswith(":") else is_set
            if op.endswith("-"):
                return env[name] if present else arg
            if op.endswith("+"):
                return arg if present else ""
            if not present:
                message = arg or f"required variable {name} is missing a value"
                raise InterpolationError(f"{path}: {message}")
            return env[name]
    raise InterpolationError(f"{path}: invalid interpolation format ${{{expr}}}")


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a `.env` file: KEY=VALUE lines, `#` comments, optional `export `, quotes."""
    result: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _NAME.fullmatch(key):
            raise InvalidArgument(f"{path}:{number}: expected KEY=VALUE, got {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            quote, value = value[0], value[1:-1]
            if quote == '"':
                value = value.replace("\\n", "\n").replace('\\"', '"')
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        result[key] = value
    return result
