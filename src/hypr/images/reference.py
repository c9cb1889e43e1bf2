"""Image references with Docker's normalisation: `nginx` is `docker.io/library/nginx:latest`.

The grammar is distribution's reference grammar (github.com/distribution/reference); the
first path component is a registry when it is `localhost` or holds a `.`, a `:` or an
upper-case letter, exactly as Docker decides it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hypr.errors import InvalidArgument

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
# Docker Hub's API answers on another host than the name users write.
_API_HOSTS = {"docker.io": "registry-1.docker.io"}
_REGISTRY_ALIASES = {"index.docker.io": "docker.io", "registry-1.docker.io": "docker.io"}

_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_DOMAIN = re.compile(
    r"^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
    r"(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*"
    r"|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?$"
)
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_SHA256 = re.compile(r"^sha256:[0-9a-f]{64}$")
_MAX_NAME = 255


@dataclass(frozen=True)
class Reference:
    """A normalised reference; `tag` is None only when a digest pins the image."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """`registry/repository`, the canonical name without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def familiar_name(self) -> str:
        """The name as Docker prints it: `nginx`, `user/app`, `127.0.0.1:5000/x`."""
        if self.registry != DEFAULT_REGISTRY:
            return self.name
        return self.repository.removeprefix("library/")

    @property
    def familiar(self) -> str:
        return self._with_suffix(self.familiar_name)

    @property
    def api_host(self) -> str:
        """The host:port that speaks the registry API for this reference."""
        return api_host(self.registry)

    @property
    def scope(self) -> str:
        """The token scope a pull of this repository asks for."""
        return f"repository:{self.repository}:pull"

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.registry, self.repository, tag, None)

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, None, digest)

    def _with_suffix(self, name: str) -> str:
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"{name}{tag}{digest}"

    def __str__(self) -> str:
        return self._with_suffix(self.name)


def api_host(registry: str) -> str:
    """Where a registry's API answers: Docker Hub's is not `docker.io` itself."""
    return _API_HOSTS.get(registry, registry)


def normalise_registry(host: str) -> str:
    """A registry host as references name it (`index.docker.io` is `docker.io`)."""
    host = host.removeprefix("https://").removeprefix("http://").rstrip("/")
    host = host.removesuffix("/v1").removesuffix("/v2")
    return _REGISTRY_ALIASES.get(host, host)


def parse_registry(text: str) -> str:
    """A registry address as `hypr login` takes it (`host[:port]`, an https:// URL or
    Docker Hub's index URL), normalised; anything else raises InvalidArgument."""
    host = normalise_registry(text.strip())
    if not host or not _DOMAIN.match(host):
        raise InvalidArgument(f"invalid registry address: {text!r}")
    return host


def parse_reference(text: str) -> Reference:
    """Parse what a user typed; malformed references raise InvalidArgument with one line."""
    if not text or text != text.strip():
        raise InvalidArgument(f"invalid reference format: {text!r}")
    rest, digest = _split_digest(text)
    rest, tag = _split_tag(rest, text)
    registry, path = _split_registry(rest, text)
    path = _check_path(registry, path, text)
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(registry, path, tag, digest)


def _split_digest(text: str) -> tuple[str, str | None]:
    if "@" not in text:
        return text, None
    rest, digest = text.split("@", 1)
    if not _DIGEST.match(digest):
        raise InvalidArgument(f"invalid reference format: bad digest in {text!r}")
    if not _SHA256.match(digest):
        raise InvalidArgument(f"unsupported digest in {text!r}: only sha256:<64 hex> is")
    return rest, digest


def _split_tag(rest: str, text: str) -> tuple[str, str | None]:
    colon = rest.rfind(":")
    if colon <= rest.rfind("/"):
        return rest, None  # no colon, or the port of a registry
    tag = rest[colon + 1 :]
    if not _TAG.match(tag):
        raise InvalidArgument(f"invalid reference format: bad tag in {text!r}")
    return rest[:colon], tag


def _check_path(registry: str, path: str, text: str) -> str:
    """The repository path, with Docker Hub's `library/` for official images."""
    components = path.split("/")
    if not all(_COMPONENT.match(c) for c in components):
        if path.lower() != path:
            raise InvalidArgument(
                f"invalid reference format: repository name must be lowercase: {text!r}"
            )
        raise InvalidArgument(f"invalid reference format: {text!r}")
    if registry == DEFAULT_REGISTRY and len(components) == 1:
        path = f"library/{path}"
    if len(f"{registry}/{path}") > _MAX_NAME:
        raise InvalidArgument(f"invalid reference format: name longer than {_MAX_NAME}")
    return path


def _split_registry(rest: str, text: str) -> tuple[str, str]:
    first, sep, remainder = rest.partition("/")
    is_registry = sep and (
        "." in first or ":" in first or first == "localhost" or first.lower() != first
    )
    if not is_registry:
        return DEFAULT_REGISTRY, rest
    if not _DOMAIN.match(first):
        raise InvalidArgument(f"invalid reference format: bad registry in {text!r}")
    return normalise_registry(first), remainder
