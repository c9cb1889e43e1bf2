"""Authentication against a registry: Docker's token flow and HTTP basic.

A 401 names how to authenticate in `WWW-Authenticate`: `Bearer realm=..,service=..,scope=..`
sends us to a token server (anonymously or with the user's credentials), `Basic` wants the
credentials on every request. Passwords never appear in a repr, a log or an error.
"""

from __future__ import annotations

import base64
import os
import re
import ssl
from dataclasses import dataclass, field

import httpx

from hypr.images.errors import RegistryUnavailable, Unauthorized


@dataclass(frozen=True)
class RegistryAuth:
    """A user's credentials for one registry; the password stays out of reprs."""

    username: str
    password: str = field(repr=False)

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "bearer" or "basic", lower case
    params: dict[str, str]


_PARAM = re.compile(r'\s*([A-Za-z][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


def parse_challenge(header: str) -> Challenge | None:
    """The first challenge of a `WWW-Authenticate` header, or None if it has none."""
    header = header.strip()
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    params: dict[str, str] = {}
    for match in _PARAM.finditer(rest):
        quoted, bare = match.group(2), match.group(3)
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        params[match.group(1).lower()] = value
    return Challenge(scheme.lower(), params)


async def fetch_token(
    http: httpx.AsyncClient,
    host: str,
    challenge: Challenge,
    scope: str | None,
    auth: RegistryAuth | None,
) -> str:
    """A bearer token for `scope` from the realm the registry named."""
    realm = challenge.params.get("realm")
    if not realm:
        raise RegistryUnavailable(f"registry {host} asked for a token but named no realm")
    params: dict[str, str] = {}
    if "service" in challenge.params:
        params["service"] = challenge.params["service"]
    wanted = scope or challenge.params.get("scope")
    if wanted:
        params["scope"] = wanted
    headers: dict[str, str] = {}
    if auth is not None:
        params["account"] = auth.username
        headers["Authorization"] = auth.basic()
    try:
        response = await http.get(realm, params=params, headers=headers)
    except httpx.HTTPError as exc:
        raise RegistryUnavailable(
            f"cannot reach the token server of {host}: {describe_error(exc)}"
        ) from None
    if response.status_code in (401, 403):
        raise unauthorized(host, auth)
    if response.status_code != 200:
        raise RegistryUnavailable(f"the token server of {host} answered {response.status_code}")
    try:
        body = response.json()
        token = body.get("token") or body.get("access_token")
    except (ValueError, AttributeError):
        token = None
    if not isinstance(token, str) or not token:
        raise RegistryUnavailable(f"the token server of {host} gave no token")
    return token


def unauthorized(host: str, auth: RegistryAuth | None) -> Unauthorized:
    if auth is None:
        return Unauthorized(f"authentication required for {host}: run `hypr login {host}`")
    return Unauthorized(f"wrong user name or password for {host}")


def describe_error(exc: BaseException) -> str:
    """What went wrong in a few words (`connection refused`, `timed out`); httpx's
    messages carry no credentials."""
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if _cause(exc, ssl.SSLError) is not None:
        return (
            "TLS handshake failed (a registry that speaks plain HTTP must be listed in "
            "HYPR_INSECURE_REGISTRIES)"
        )
    cause = _os_error(exc)
    if cause is not None and cause.errno is not None:
        reason = os.strerror(cause.errno)
        return reason[0].lower() + reason[1:]
    text = str(exc).strip().splitlines()
    return text[-1] if text and text[-1] else type(exc).__name__


def _cause(exc: BaseException | None, kind: type[BaseException]) -> BaseException | None:
    """The first error of type `kind` in the chain under `exc`."""
    for _ in range(8):
        if exc is None or isinstance(exc, kind):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _os_error(exc: BaseException | None, depth: int = 0) -> OSError | None:
    """The operating system's error under an httpx/anyio error, if there is one."""
    if exc is None or depth > 8:
        return None
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _os_error(inner, depth + 1)
            if found is not None:
                return found
    return _os_error(exc.__cause__ or exc.__context__, depth + 1)
