"""Merging compose documents by the Compose specification's rules (`-f a -f b`, override
files, `extends`), and the YAML tags that steer it.

Mappings merge key by key; scalars are replaced; sequences are appended, except that
`command`, `entrypoint` and `healthcheck.test` are replaced, and that entries with the same
unique key (a port's host address, port and protocol, a mount's target, an environment
variable's or label's name) keep one place and take the later value. A value tagged
`!reset` removes what earlier files set; `!override` replaces it instead of merging. The
rules are those of compose-go's override package, which Docker Compose uses.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import yaml

from hypr.errors import InvalidArgument


class Reset:
    """`!reset`: drop the value that earlier files (or an extended service) set."""

    def __repr__(self) -> str:
        return "!reset"


class OverrideDict(dict[str, Any]):
    """A mapping tagged `!override`: it replaces the earlier value whole."""


class OverrideList(list[Any]):
    """A sequence tagged `!override`: it replaces the earlier value whole."""


class _Loader(yaml.SafeLoader):
    """Safe YAML with compose's two merge tags."""


def _reset(loader: yaml.SafeLoader, node: yaml.Node) -> Reset:
    return Reset()


def _override(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return OverrideDict(
            {str(k): v for k, v in loader.construct_mapping(node, deep=True).items()}
        )
    if isinstance(node, yaml.SequenceNode):
        return OverrideList(loader.construct_sequence(node, deep=True))
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    raise yaml.constructor.ConstructorError(
        None, None, "!override on an unknown node", node.start_mark
    )  # a scalar replaces the earlier one anyway


_Loader.add_constructor("!reset", _reset)
_Loader.add_constructor("!override", _override)


def load_yaml(text: str, name: str) -> dict[str, Any]:
    """One compose file's YAML (anchors and `<<` merge keys included); `name` is how
    errors call the file."""
    try:
        raw = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"{name}: invalid YAML: {exc}".splitlines()[0]) from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidArgument(f"{name}: the top level must be a mapping")
    return raw


# --- merging -------------------------------------------------------------------------------

Path = tuple[str, ...]
_REPLACED = ("services.*.command", "services.*.entrypoint", "services.*.healthcheck.test")
# Lists or mappings of NAME=VALUE: merged by name, the later value winning.
_KEY_VALUES = (
    "services.*.environment",
    "services.*.labels",
    "services.*.build.args",
    "services.*.build.labels",
    "services.*.deploy.labels",
    "services.*.sysctls",
    "services.*.annotations",
    "networks.*.labels",
    "volumes.*.labels",
)
# Lists of names, or mappings from names to options: merged as mappings.
_NAMED = ("services.*.networks", "services.*.depends_on")


def _matches(path: Path, patterns: tuple[str, ...]) -> bool:
    return any(
        len(parts) == len(path) and all(p in ("*", s) for p, s in zip(parts, path, strict=True))
        for parts in (pattern.split(".") for pattern in patterns)
    )


def merge(base: Any, other: Any, path: Path = ()) -> Any:
    """`other` (a later file, or the extending service) merged onto `base`; neither is
    changed. Tags left in `other` apply here; call `strip_tags` on the end result."""
    if isinstance(other, Reset):
        return other
    if other is None:
        return copy.deepcopy(base)
    if base is None or isinstance(other, OverrideDict | OverrideList):
        return copy.deepcopy(other)
    if _matches(path, _REPLACED):
        return copy.deepcopy(other)
    if _matches(path, _KEY_VALUES):
        return {**_key_values(base), **_key_values(other)}
    if _matches(path, _NAMED):
        base, other = _named(base, path), _named(other, path)
    elif _matches(path, ("services.*.build",)):
        base, other = _build(base), _build(other)
    return _merge_values(base, other, path)


def _merge_values(base: Any, other: Any, path: Path) -> Any:
    """Mappings key by key, sequences appended (one entry per unique key), values replaced."""
    if isinstance(base, dict) and isinstance(other, dict):
        merged = copy.deepcopy(base)
        for key, value in other.items():
            merged[key] = merge(base[key], value, (*path, str(key))) if key in base else value
        return {k: v for k, v in merged.items() if not isinstance(v, Reset)}
    if isinstance(base, list) and isinstance(other, list):
        return unique([*copy.deepcopy(base), *copy.deepcopy(other)], path)
    if isinstance(base, dict | list) != isinstance(other, dict | list):
        where = ".".join(path)
        raise InvalidArgument(f"{where}: cannot merge a {_kind(other)} into a {_kind(base)}")
    return copy.deepcopy(other)


def _kind(value: Any) -> str:
    return "mapping" if isinstance(value, dict) else "list" if isinstance(value, list) else "value"


def _key_values(value: Any) -> dict[str, Any]:
    """`[A=1, B]` or `{A: 1, B: null}` as a mapping (B: no value, taken from elsewhere)."""
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        pairs = (str(item).partition("=") for item in value)
        return {key: val if sep else None for key, sep, val in pairs}
    return {} if value is None else {str(value): None}


def _named(value: Any, path: Path) -> Any:
    if not isinstance(value, list):
        return value
    started = {"condition": "service_started", "required": True}
    default = started if path[-1] == "depends_on" else None
    return {str(name): copy.deepcopy(default) for name in value}


def _build(value: Any) -> Any:
    return {"context": value} if isinstance(value, str) else value


# --- unique entries of merged sequences ----------------------------------------------------


def _port_key(entry: Any) -> str:
    """Compose-go's port key: host address, published port, target, protocol."""
    if isinstance(entry, dict):
        published = entry.get("published", "")
        return (
            f"{entry.get('host_ip', '0.0.0.0')}:{published}:{entry.get('target')}"
            f"/{entry.get('protocol', 'tcp')}"
        )
    text, _, protocol = str(entry).partition("/")
    parts = text.rsplit(":", 2)
    host_ip = parts[0] if len(parts) == 3 else "0.0.0.0"
    published = parts[-2] if len(parts) >= 2 else ""
    return f"{host_ip}:{published}:{parts[-1]}/{protocol or 'tcp'}"


def _mount_key(entry: Any) -> str:
    """A mount's target: the long syntax's `target`, the short syntax's second part."""
    if isinstance(entry, dict):
        return str(entry.get("target"))
    parts = str(entry).split(":")
    return parts[1] if len(parts) > 1 else parts[0]


def _env_file_key(entry: Any) -> str:
    return str(entry.get("path")) if isinstance(entry, dict) else str(entry)


def _secret_key(entry: Any) -> str:
    if isinstance(entry, dict):
        return str(entry.get("target") or entry.get("source"))
    return str(entry)


_UNIQUE: dict[str, Callable[[Any], str]] = {
    "services.*.ports": _port_key,
    "services.*.volumes": _mount_key,
    "services.*.tmpfs": lambda entry: str(entry).partition(":")[0],
    "services.*.env_file": _env_file_key,
    "services.*.secrets": _secret_key,
    "services.*.configs": _secret_key,
    "services.*.expose": str,
    "services.*.dns": str,
    "services.*.dns_search": str,
    "services.*.cap_add": str,
    "services.*.cap_drop": str,
    "services.*.profiles": str,
    "services.*.networks.*.aliases": str,
}


def unique(entries: list[Any], path: Path) -> list[Any]:
    """A merged sequence with one entry per unique key, where the key's first entry was,
    holding its last value (compose-go's EnforceUnicity); other sequences as they are."""
    index = next((f for p, f in _UNIQUE.items() if _matches(path, (p,))), None)
    if index is None:
        return entries
    result: list[Any] = []
    position: dict[str, int] = {}
    for entry in entries:
        key = index(entry)
        if key in position:
            result[position[key]] = entry
        else:
            position[key] = len(result)
            result.append(entry)
    return result


def strip_tags(value: Any) -> Any:
    """A merged document as plain data: `!reset` values gone, `!override` ones plain."""
    if isinstance(value, dict):
        return {k: strip_tags(v) for k, v in value.items() if not isinstance(v, Reset)}
    if isinstance(value, list):
        return [strip_tags(v) for v in value if not isinstance(v, Reset)]
    return value


_PATH_PART = re.compile(r"[^.\[\]]+|\[\d+\]")


def split_path(path: str) -> list[str | int]:
    """`services.web.ports[1]` as `["services", "web", "ports", 1]`."""
    return [int(p[1:-1]) if p.startswith("[") else p for p in _PATH_PART.findall(path)]
