"""Registry credentials, kept by the CLI as Docker keeps them, and sent per request.

The file is Docker's `config.json` (`{"auths": {"host": {"auth": base64("user:pass")}}}`)
at `$HYPR_CONFIG/config.json` (default `~/.hypr/`), mode 0600 in a 0700 directory; when it
has nothing for a registry, `~/.docker/config.json` is read too. The daemon never stores
credentials: the CLI sends them with each pull in `X-Registry-Auth`, as Docker's does.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypr.errors import InvalidArgument

DOCKER_HUB = "docker.io"
# Docker keeps Docker Hub's credentials under its old index URL; so do we, to share files.
_HUB_KEY = "https://index.docker.io/v1/"
_HUB_NAMES = {"docker.io", "index.docker.io", "registry-1.docker.io"}


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)


def config_path() -> Path:
    base = os.environ.get("HYPR_CONFIG") or str(Path.home() / ".hypr")
    return Path(base) / "config.json"


def docker_config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
    return Path(base) / "config.json"


def server_name(server: str) -> str:
    """`host[:port]` of a registry as users write it; Docker Hub is `docker.io`."""
    host = server.strip().removeprefix("https://").removeprefix("http://").split("/")[0]
    return DOCKER_HUB if host in _HUB_NAMES else host


def registry_of(image: str) -> str:
    """The registry an image reference names, by Docker's rule for the first component."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        return server_name(first)
    return DOCKER_HUB


def _key(server: str) -> str:
    name = server_name(server)
    return _HUB_KEY if name == DOCKER_HUB else name


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise InvalidArgument(f"cannot read {path}: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise InvalidArgument(f"cannot read {path}: not a JSON object")
    return data


def _entry(auths: Any, server: str) -> Credentials | None:
    if not isinstance(auths, dict):
        return None
    name = server_name(server)
    for key, entry in auths.items():
        if server_name(key) != name or not isinstance(entry, dict):
            continue
        if isinstance(entry.get("auth"), str) and entry["auth"]:
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                continue
            return Credentials(user, password)
        if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
            return Credentials(entry["username"], entry["password"])
    return None


def load(server: str) -> Credentials | None:
    """The stored credentials for `server`: hypr's file first, then Docker's."""
    for path in (config_path(), docker_config_path()):
        found = _entry(_read(path).get("auths"), server)
        if found is not None:
            return found
    return None


def _write(path: Path, data: dict[str, Any]) -> None:
    """Replace the file atomically; it is created 0600, never readable by others."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(data, out, indent="\t")
            out.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def save(server: str, creds: Credentials) -> None:
    path = config_path()
    data = _read(path)
    auths = data.get("auths") if isinstance(data.get("auths"), dict) else {}
    assert isinstance(auths, dict)
    auths = {k: v for k, v in auths.items() if server_name(k) != server_name(server)}
    raw = f"{creds.username}:{creds.password}".encode()
    auths[_key(server)] = {"auth": base64.b64encode(raw).decode()}
    _write(path, {**data, "auths": auths})


def remove(server: str) -> bool:
    """Forget `server`'s credentials in hypr's file; False if there were none."""
    path = config_path()
    data = _read(path)
    auths = data.get("auths")
    if not isinstance(auths, dict):
        return False
    kept = {k: v for k, v in auths.items() if server_name(k) != server_name(server)}
    if len(kept) == len(auths):
        return False
    _write(path, {**data, "auths": kept})
    return True


def registry_auth_header(server: str, creds: Credentials) -> str:
    """The `X-Registry-Auth` value of Docker's Engine API: base64url of a JSON object."""
    body = {"username": creds.username, "password": creds.password, "serveraddress": server}
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode()
