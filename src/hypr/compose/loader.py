"""Compose files read as Docker Compose reads them: each file parsed, interpolated, its
`include`s and `extends` resolved, then merged in order into one document.

Paths in the files given to a command are relative to the project directory (the daemon
resolves them, `HostPaths`); those of an included project, or of a service extended from
another file, are relative to that project's or file's directory, so they are made
absolute here. `env_file`s are read last, so that a later file's `environment` still
wins over an earlier file's `env_file`, as in Compose.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypr.compose.files import STDIN, Sources
from hypr.compose.interpolate import interpolate, read_env_file
from hypr.compose.merge import load_yaml, merge, split_path, strip_tags
from hypr.compose.rebase import rebase_document, rebase_service
from hypr.errors import InvalidArgument

RESOURCES = ("services", "networks", "volumes", "secrets", "configs")


@dataclass
class Document:
    """The merged document, and each file's part of it to name a file in errors."""

    document: dict[str, Any]
    files: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (name, its part)

    def locate(self, exc: InvalidArgument) -> InvalidArgument:
        """The error with the file that set the path it names (`extra.yaml: services.a...`):
        the last file that has the longest part of that path."""
        path, sep, _ = exc.message.partition(": ")
        parts = split_path(path) if sep else []
        if not self.files or not parts or parts[0] not in (*RESOURCES, "include", "name"):
            return exc
        name = self.files[0][0]
        for depth in range(len(parts), 0, -1):
            having = [f for f, doc in self.files if _has(doc, self.document, parts[:depth])]
            if having:
                name = having[-1]
                break
        return InvalidArgument(f"{name}: {exc.message}")


def _has(doc: Any, merged: Any, parts: list[str | int]) -> bool:
    """Whether `doc` sets this path; a list index is matched by the merged entry's value."""
    for part in parts:
        if isinstance(part, int):
            if not isinstance(doc, list) or not isinstance(merged, list) or part >= len(merged):
                return False
            if merged[part] not in doc:
                return False
            doc, merged = merged[part], merged[part]
        else:
            if not isinstance(doc, dict) or part not in doc:
                return False
            doc = doc[part]
            merged = merged.get(part) if isinstance(merged, dict) else None
    return True


def load_document(sources: Sources, read_stdin: Callable[[], str], cwd: Path) -> Document:
    """The files of `sources` as one interpolated document."""
    result = Document({})
    for file in sources.files:
        name = "stdin" if file == STDIN else _shown(Path(file), cwd)
        text = read_stdin() if file == STDIN else Path(file).read_text()
        part = _load_file(text, name, Path(file), sources.project_dir, sources.env, [])
        result.files.append((name, part))
        try:
            result.document = merge(result.document, part)
        except InvalidArgument as exc:
            raise InvalidArgument(f"{name}: {exc.message}") from None
    result.document = strip_tags(result.document)
    _inline_env_files(result.document, sources.project_dir)
    return result


def _shown(file: Path, cwd: Path) -> str:
    """How errors name a file: relative to the working directory if it is below it."""
    relative = os.path.relpath(file, cwd)
    return str(file) if relative.startswith("..") else relative


def _load_file(
    text: str, name: str, path: Path, base: Path, env: Mapping[str, str], chain: list[Path]
) -> dict[str, Any]:
    """One file parsed, interpolated, with its includes and extends resolved; `base` is
    what its relative paths are relative to."""
    document: dict[str, Any] = interpolate(load_yaml(text, name), env)
    try:
        _include(document, name, base, env, [*chain, path.resolve()])
        services = document.get("services") or {}
        if not isinstance(services, dict):
            raise InvalidArgument("services: expected a mapping")
        for service in list(services):
            _extend(service, services, path.resolve(), base, env, [])
    except InvalidArgument as exc:
        if exc.message.startswith(f"{name}: "):
            raise
        raise InvalidArgument(f"{name}: {exc.message}") from None
    return document


# --- include -------------------------------------------------------------------------------


def _include(
    document: dict[str, Any], name: str, base: Path, env: Mapping[str, str], chain: list[Path]
) -> None:
    """Copy in the resources of each included project, loaded with its own project
    directory and `.env`; one that the file (or an earlier include) defines differently is
    refused, as Compose refuses it."""
    entries = document.pop("include", None) or []
    if not isinstance(entries, list):
        raise InvalidArgument("include: expected a list")
    for i, entry in enumerate(entries):
        entry = {"path": entry} if isinstance(entry, str) else entry
        if not isinstance(entry, dict) or not entry.get("path"):
            raise InvalidArgument(f"include[{i}]: expected a path or a mapping with path")
        paths = entry["path"] if isinstance(entry["path"], list) else [entry["path"]]
        files = [(base / str(p)).resolve() for p in paths]
        for p, file in zip(paths, files, strict=True):
            if not file.is_file():
                raise InvalidArgument(f"include[{i}]: included file {p} not found")
            if file in chain:
                cycle = " -> ".join(str(c.name) for c in [*chain, file])
                raise InvalidArgument(f"include[{i}]: include cycle: {cycle}")
        directory = base / entry["project_directory"] if entry.get("project_directory") else None
        project_dir = (directory or files[0].parent).resolve()
        own_env = _include_env(entry, base, project_dir, i)
        included: dict[str, Any] = {}
        for file in files:
            part = _load_file(
                file.read_text(), file.name, file, project_dir, {**own_env, **env}, chain
            )
            included = merge(included, part)
        included = strip_tags(included)
        _inline_env_files(included, project_dir)
        rebase_document(included, project_dir)
        _import(document, included, paths[0])


def _include_env(entry: dict[str, Any], base: Path, project_dir: Path, i: int) -> dict[str, str]:
    """An included project's variables: its `env_file`s, else `.env` in its directory."""
    env_files = entry.get("env_file") or []
    env_files = [env_files] if isinstance(env_files, str) else env_files
    variables: dict[str, str] = {}
    for dotenv in [base / f for f in env_files] or [project_dir / ".env"]:
        if dotenv.is_file():
            variables.update(read_env_file(dotenv))
        elif env_files:
            raise InvalidArgument(f"include[{i}].env_file: {dotenv} not found")
    return variables


def _import(document: dict[str, Any], included: dict[str, Any], source: str) -> None:
    for key in RESOURCES:
        theirs = included.get(key) or {}
        if not theirs:
            continue
        ours = document[key] = document.get(key) or {}
        for resource, definition in theirs.items():
            if resource in ours and ours[resource] != definition:
                raise InvalidArgument(
                    f"{key}.{resource}: conflicts with the one that the included {source} "
                    "defines (rename one, or change it with an override file in that include)"
                )
            ours[resource] = definition


# --- extends -------------------------------------------------------------------------------


def _extend(
    service: str,
    services: dict[str, Any],
    file: Path,
    base: Path,
    env: Mapping[str, str],
    chain: list[tuple[str, Path]],
) -> dict[str, Any]:
    """A service with its `extends` resolved (the base first, then the service merged onto
    it); a cycle is refused with the chain of services it runs through."""
    definition = services.get(service)
    if not isinstance(definition, dict):
        raise InvalidArgument(f"services.{service}: expected a mapping")
    if "extends" not in definition:
        return definition
    link = (service, file)
    if link in chain:
        steps = [f"{s} in {f.name}" for s, f in [*chain, link]]
        raise InvalidArgument(f"services.{service}.extends: extends cycle: {' -> '.join(steps)}")
    extends = definition["extends"]
    extends = {"service": extends} if isinstance(extends, str) else extends
    if not isinstance(extends, dict) or not isinstance(extends.get("service"), str):
        raise InvalidArgument(f"services.{service}.extends: expected a service name or a mapping")
    ref = extends["service"]
    if extends.get("file"):
        other_file = (base / str(extends["file"])).resolve()
        if not other_file.is_file():
            raise InvalidArgument(f"services.{service}.extends.file: {extends['file']} not found")
        text = other_file.read_text()
        others = interpolate(load_yaml(text, other_file.name), env).get("services") or {}
        if ref not in others:
            raise InvalidArgument(
                f"services.{service}.extends: no service {ref!r} in {extends['file']}"
            )
        found = _extend(ref, others, other_file, other_file.parent, env, [*chain, link])
        parent = rebase_service(found, other_file.parent)
    else:
        if ref not in services:
            raise InvalidArgument(f"services.{service}.extends: no service {ref!r} to extend")
        parent = _extend(ref, services, file, base, env, [*chain, link])
    own = {k: v for k, v in definition.items() if k != "extends"}
    merged = merge(copy.deepcopy(parent), own, ("services", service))
    services[service] = merged
    return dict(merged)


# --- env_file ------------------------------------------------------------------------------


def _inline_env_files(document: dict[str, Any], base: Path) -> None:
    """Each service's `env_file`s read (relative to `base`) into its `environment`, under
    what `environment` sets itself."""
    for name, service in (document.get("services") or {}).items():
        if not isinstance(service, dict) or "env_file" not in service:
            continue
        entries = service.pop("env_file")
        entries = [entries] if isinstance(entries, str | dict) else entries or []
        merged: dict[str, Any] = {}
        for entry in entries:
            path = entry if isinstance(entry, str) else str(entry.get("path", ""))
            required = True if isinstance(entry, str) else entry.get("required", True)
            full = base / path
            if full.is_file():
                merged.update(read_env_file(full))
            elif required:
                raise InvalidArgument(f"services.{name}.env_file: {path} not found")
        own = service.get("environment") or {}
        if isinstance(own, list):
            own = {k: v if sep else None for k, sep, v in (str(i).partition("=") for i in own)}
        service["environment"] = {**merged, **own}
