"""Which compose files a command reads, and from where, as Docker Compose picks them.

`-f` (repeatable; `-` is stdin), else `COMPOSE_FILE` (split on `COMPOSE_PATH_SEPARATOR`,
by default `:`), else the first of the default names found in the working directory (or
`--project-directory`) or the nearest parent that has one, with its `*.override.*` file
beside it. The project
directory is `--project-directory`, else the first file's directory; `.env` there (or the
`--env-file`s) fills the variables the environment does not set.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hypr.compose.interpolate import read_env_file
from hypr.errors import InvalidArgument

DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
OVERRIDE_FILES = (
    "compose.override.yml",
    "compose.override.yaml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
)
STDIN = "-"


@dataclass(frozen=True)
class Options:
    """What the command line says about the files: -f, --project-directory, -p,
    --profile and --env-file."""

    files: tuple[str, ...] = ()
    project_directory: str | None = None
    project_name: str | None = None
    profiles: tuple[str, ...] = ()
    env_files: tuple[str, ...] = ()


@dataclass(frozen=True)
class Sources:
    """The files to read (in merge order), the project directory and the variables."""

    files: list[str]  # paths, or STDIN
    project_dir: Path
    env: dict[str, str] = field(default_factory=dict)


def find_sources(options: Options, cwd: Path, environ: Mapping[str, str]) -> Sources:
    """The files, project directory and interpolation variables a command uses."""
    first = next((f for f in options.files if f != STDIN), None)
    guess = Path(options.project_directory or (Path(first).parent if first else cwd))
    env = {**_dotenv(cwd / guess, options.env_files, cwd), **environ}
    files = list(options.files)
    if not files and env.get("COMPOSE_FILE"):
        separator = env.get("COMPOSE_PATH_SEPARATOR") or os.pathsep
        files = [f for f in env["COMPOSE_FILE"].split(separator) if f]
    start = cwd / options.project_directory if options.project_directory else cwd
    files = [f if f == STDIN else str(cwd / f) for f in files] or _discover(start)
    for file in files:
        if file != STDIN and not Path(file).is_file():
            raise InvalidArgument(f"compose file {os.path.relpath(file, cwd)} not found")
    main = next((f for f in files if f != STDIN), None)
    if options.project_directory:
        project_dir = (cwd / options.project_directory).resolve()
    else:
        project_dir = Path(main).resolve().parent if main else cwd
    if project_dir != (cwd / guess).resolve():
        env = {**_dotenv(project_dir, options.env_files, cwd), **environ}
    return Sources(files, project_dir, env)


def _discover(cwd: Path) -> list[str]:
    """The default file in the working directory or its nearest parent that has one, and
    its override file if there is one."""
    for directory in (cwd, *cwd.parents):
        for name in DEFAULT_FILES:
            if (directory / name).is_file():
                overrides = [directory / o for o in OVERRIDE_FILES if (directory / o).is_file()]
                return [str(directory / name), *(str(o) for o in overrides[:1])]
    raise InvalidArgument(
        f"no compose file in {cwd} or above (looked for {', '.join(DEFAULT_FILES)}); use -f FILE"
    )


def _dotenv(directory: Path, env_files: tuple[str, ...], cwd: Path) -> dict[str, str]:
    """The `--env-file`s, else `.env` in the project directory if there is one."""
    if env_files:
        paths = [cwd / f for f in env_files]
        for path in paths:
            if not path.is_file():
                raise InvalidArgument(f"env file {path} not found")
    else:
        paths = [p for p in [directory / ".env"] if p.is_file()]
    merged: dict[str, str] = {}
    for path in paths:
        merged.update(read_env_file(path))
    return merged


def project_name(
    explicit: str | None, env: Mapping[str, str], document: Mapping[str, object], directory: Path
) -> str:
    """As Docker Compose: -p, then COMPOSE_PROJECT_NAME, the top-level `name`, the project
    directory's name (lowercase letters, digits, `-` and `_`)."""
    raw = explicit or env.get("COMPOSE_PROJECT_NAME") or document.get("name")
    name = str(raw) if raw else re.sub(r"[^a-z0-9_-]", "", directory.name.lower())
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name):
        raise InvalidArgument(
            f"invalid project name {name!r}: use lowercase letters, digits, '-' and '_'"
        )
    return name


def active_profiles(options: Options, env: Mapping[str, str]) -> tuple[str, ...]:
    """--profile, else COMPOSE_PROFILES (comma-separated)."""
    if options.profiles:
        return options.profiles
    return tuple(p.strip() for p in env.get("COMPOSE_PROFILES", "").split(",") if p.strip())
