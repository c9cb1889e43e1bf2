"""Relative host paths made absolute, for what comes from another directory than the
project's: a service extended from another file, an included project.

The paths are those compose resolves (compose-go's ResolveRelativePaths): bind sources of
`volumes` (short and long syntax), `env_file`s, `build.context`, `extends.file`, and a
top-level bind volume's `driver_opts.device`. `~` is left for the daemon (`HostPaths`), which
knows whose home it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _absolute(path: str, base: Path) -> str:
    if path.startswith(("/", "~")) or "://" in path:
        return path
    return str((base / path).resolve())


def _volume(entry: Any, base: Path) -> Any:
    if isinstance(entry, str):
        source, sep, rest = entry.partition(":")
        if sep and source.startswith("."):
            return f"{_absolute(source, base)}:{rest}"
        return entry
    if isinstance(entry, dict) and entry.get("type") == "bind" and entry.get("source"):
        return {**entry, "source": _absolute(str(entry["source"]), base)}
    return entry


def _env_file(entry: Any, base: Path) -> Any:
    if isinstance(entry, dict) and entry.get("path"):
        return {**entry, "path": _absolute(str(entry["path"]), base)}
    return _absolute(str(entry), base) if isinstance(entry, str) else entry


def rebase_service(service: dict[str, Any], base: Path) -> dict[str, Any]:
    """A service definition whose relative paths are relative to `base`, with absolute
    ones instead (a new mapping)."""
    result = dict(service)
    if isinstance(result.get("volumes"), list):
        result["volumes"] = [_volume(v, base) for v in result["volumes"]]
    env_files = result.get("env_file")
    if env_files:
        listed = env_files if isinstance(env_files, list) else [env_files]
        result["env_file"] = [_env_file(e, base) for e in listed]
    build = result.get("build")
    if isinstance(build, str):
        result["build"] = {"context": _absolute(build, base)}
    elif isinstance(build, dict):
        result["build"] = {**build, "context": _absolute(str(build.get("context", ".")), base)}
    extends = result.get("extends")
    if isinstance(extends, dict) and extends.get("file"):
        result["extends"] = {**extends, "file": _absolute(str(extends["file"]), base)}
    return result


def rebase_document(document: dict[str, Any], base: Path) -> None:
    """Every service and top-level volume of an included project rebased in place."""
    services = document.get("services") or {}
    for name, service in services.items():
        if isinstance(service, dict):
            services[name] = rebase_service(service, base)
    for volume in (document.get("volumes") or {}).values():
        options = volume.get("driver_opts") if isinstance(volume, dict) else None
        if not isinstance(options, dict) or not isinstance(options.get("device"), str):
            continue
        if "bind" in str(options.get("o", "")).split(","):
            options["device"] = _absolute(options["device"], base)
