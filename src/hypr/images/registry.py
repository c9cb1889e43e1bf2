"""A client of the OCI distribution API (and Docker's registry API v2) on httpx.

`resolve` turns a reference into the manifest for the host's platform and its config, each
checked against its digest; `stream_blob` serves a layer's raw bytes, which the content
store hashes while it writes them. Loopback registries speak plain HTTP, as Docker allows;
any other one HTTPS unless it is listed as insecure.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

from hypr.images import oci
from hypr.images.errors import (
    DigestMismatch,
    ImageNotFound,
    InvalidManifest,
    PlatformNotFound,
    RegistryUnavailable,
    Unauthorized,
)
from hypr.images.reference import Reference, api_host, normalise_registry
from hypr.images.registry_auth import (
    RegistryAuth,
    describe_error,
    fetch_token,
    parse_challenge,
    unauthorized,
)

__all__ = ["RegistryAuth", "RegistryClient", "ResolvedImage"]

MAX_MANIFEST = 4 << 20  # containerd's limit: a manifest or config larger is refused
_ACCEPT = ", ".join((*oci.MANIFEST_TYPES, *oci.INDEX_TYPES))
_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


@dataclass(frozen=True)
class ResolvedImage:
    """What a reference points at on the registry, verified; the layers are still there."""

    reference: Reference
    digest: str  # the repo digest: of what the tag points at (index or manifest)
    manifest: bytes  # the platform's manifest
    manifest_media_type: str
    config: bytes
    config_descriptor: oci.Descriptor
    layers: list[oci.Descriptor]
    manifest_digest: str  # equals `digest` unless the tag points at an index


def is_loopback(host: str) -> bool:
    """Whether `host[:port]` names this machine (plain HTTP is then fine)."""
    if host.startswith("["):
        name = host[1 : host.find("]")]
    elif host.count(":") == 1:
        name = host.split(":")[0]
    else:
        name = host
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class RegistryClient:
    """One user's session with registries: tokens are cached per host and scope."""

    def __init__(self, auth: RegistryAuth | None = None, insecure: Iterable[str] = ()) -> None:
        self._auth = auth
        self._insecure = {normalise_registry(h) for h in insecure}
        self._http = httpx.AsyncClient(follow_redirects=True, timeout=_TIMEOUT)
        self._authorization: dict[tuple[str, str | None], str] = {}

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def base_url(self, host: str) -> str:
        plain = is_loopback(host) or normalise_registry(host) in self._insecure
        return f"{'http' if plain else 'https'}://{host}"

    async def check_login(self, ref_or_host: Reference | str) -> None:
        """Prove the credentials on the registry's /v2/ (as `docker login`); raises
        Unauthorized when they are wrong."""
        if isinstance(ref_or_host, Reference):
            host = ref_or_host.api_host
        else:
            host = api_host(normalise_registry(ref_or_host))
        response = await self._open(host, "GET", "/v2/", None, {})
        await response.aclose()
        if response.status_code != 200:
            raise RegistryUnavailable(f"registry {host} answered {response.status_code} on /v2/")

    async def resolve(
        self,
        ref: Reference,
        platform: oci.Platform,
        known: Callable[[str], bytes | None] = lambda digest: None,
    ) -> ResolvedImage:
        """The platform's manifest and config for `ref`, every byte checked; a config that
        `known(digest)` has already (a re-pull) is not fetched again."""
        top, top_type, repo_digest = await self._manifest(ref, ref.digest or ref.tag or "")
        manifest, media_type, manifest_digest = top, top_type, repo_digest
        if top_type in oci.INDEX_TYPES:
            entry = _pick_platform(ref, _json(top, ref), platform)
            manifest, media_type, manifest_digest = await self._manifest(ref, entry.digest)
            if len(manifest) != entry.size:
                raise DigestMismatch(f"manifest {entry.digest} of {ref.familiar}: wrong size")
        if media_type not in oci.MANIFEST_TYPES:
            raise InvalidManifest(f"{ref.familiar}: unsupported manifest type {media_type!r}")
        body = _json(manifest, ref)
        config_desc = _descriptor(body.get("config"), ref)
        layers = [_descriptor(item, ref) for item in _list(body, "layers", ref)]
        if config_desc.size > MAX_MANIFEST:
            raise InvalidManifest(f"{ref.familiar}: image config of {config_desc.size} bytes")
        config = bytearray(known(config_desc.digest) or b"")
        if not config:
            async for chunk in self.stream_blob(ref, config_desc):
                config += chunk
                if len(config) > config_desc.size:  # never read more than was declared
                    break
        _verify(bytes(config), config_desc.digest, f"config of {ref.familiar}")
        return ResolvedImage(
            ref,
            repo_digest,
            manifest,
            media_type,
            bytes(config),
            config_desc,
            layers,
            manifest_digest,
        )

    async def stream_blob(self, ref: Reference, desc: oci.Descriptor) -> AsyncIterator[bytes]:
        """The blob's bytes as served (redirects followed); the caller verifies them."""
        path = f"/v2/{ref.repository}/blobs/{desc.digest}"
        response = await self._open(ref.api_host, "GET", path, ref.scope, {})
        try:
            await _raise_for_status(response, ref, f"blob {desc.digest}")
            async for chunk in response.aiter_bytes():
                yield chunk
        except httpx.HTTPError as exc:
            raise RegistryUnavailable(
                f"download of {desc.digest[:19]} from {ref.registry} failed: {describe_error(exc)}"
            ) from None
        finally:
            await response.aclose()

    async def _manifest(self, ref: Reference, which: str) -> tuple[bytes, str, str]:
        """A manifest or index by tag or digest: (bytes, media type, its digest)."""
        path = f"/v2/{ref.repository}/manifests/{which}"
        response = await self._open(ref.api_host, "GET", path, ref.scope, {"Accept": _ACCEPT})
        try:
            await _raise_for_status(response, ref, "manifest")
            data = bytearray()
            async for chunk in response.aiter_bytes():
                data += chunk
                if len(data) > MAX_MANIFEST:
                    raise InvalidManifest(f"{ref.familiar}: manifest over {MAX_MANIFEST} bytes")
        except httpx.HTTPError as exc:
            raise RegistryUnavailable(
                f"cannot fetch the manifest of {ref.familiar}: {describe_error(exc)}"
            ) from None
        finally:
            await response.aclose()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        expected = which if which.startswith("sha256:") else None
        served = response.headers.get("Docker-Content-Digest")
        for claimed in (expected, served if served and served.startswith("sha256:") else None):
            if claimed is not None and claimed != digest:
                raise DigestMismatch(f"manifest of {ref.familiar} does not match {claimed}")
        body = _json(bytes(data), ref)
        media_type = body.get("mediaType")
        if not isinstance(media_type, str) or not media_type:
            media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        if media_type not in (*oci.INDEX_TYPES, *oci.MANIFEST_TYPES):
            # The OCI spec makes mediaType optional, and some servers send a generic
            # Content-Type: tell index and manifest apart by their fields.
            media_type = oci.OCI_INDEX if "manifests" in body else media_type
            media_type = oci.OCI_MANIFEST if "layers" in body else media_type
        return bytes(data), media_type, digest

    async def _open(
        self, host: str, method: str, path: str, scope: str | None, headers: dict[str, str]
    ) -> httpx.Response:
        """Send with the cached authorization; on a 401 follow its challenge once."""
        key = (host, scope)
        response = await self._send(host, method, path, headers, self._authorization.get(key))
        if response.status_code != 401:
            return response
        await response.aclose()
        challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        if challenge is None or challenge.scheme not in ("bearer", "basic"):
            raise unauthorized(host, self._auth)
        if challenge.scheme == "basic":
            if self._auth is None:
                raise unauthorized(host, None)
            authorization = self._auth.basic()
        else:
            token = await fetch_token(self._http, host, challenge, scope, self._auth)
            authorization = f"Bearer {token}"
        response = await self._send(host, method, path, headers, authorization)
        if response.status_code == 401:
            await response.aclose()
            if challenge.scheme == "bearer" and scope is not None:
                # The token server took the credentials (or none), but the token grants
                # nothing for this repository: Docker's words for it.
                repository = scope.split(":")[1]
                raise Unauthorized(
                    f"pull access denied for {host}/{repository}, repository does not exist "
                    f"or may require `hypr login {host}`"
                )
            raise unauthorized(host, self._auth)
        self._authorization[key] = authorization
        return response

    async def _send(
        self, host: str, method: str, path: str, headers: dict[str, str], authorization: str | None
    ) -> httpx.Response:
        # Accept-Encoding identity: the bytes hashed are the bytes the registry stores.
        sent = {"Accept-Encoding": "identity", **headers}
        if authorization:
            sent["Authorization"] = authorization
        request = self._http.build_request(method, self.base_url(host) + path, headers=sent)
        try:
            return await self._http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise RegistryUnavailable(
                f"cannot reach registry {host}: {describe_error(exc)}"
            ) from None


async def _raise_for_status(response: httpx.Response, ref: Reference, what: str) -> None:
    status = response.status_code
    if status == 200:
        return
    if status == 404:
        codes = await _error_codes(response)
        if "NAME_UNKNOWN" in codes:
            raise ImageNotFound(f"repository {ref.familiar_name} not found")
        if what == "manifest":
            raise ImageNotFound(f"manifest for {ref.familiar} not found: manifest unknown")
        raise ImageNotFound(f"{what} of {ref.familiar} not found on {ref.registry}")
    if status == 403:
        raise Unauthorized(f"access to {ref.familiar_name} denied by {ref.registry}")
    if status == 429:
        raise RegistryUnavailable(f"registry {ref.registry} says: too many requests")
    raise RegistryUnavailable(f"registry {ref.registry} answered {status} for the {what}")


async def _error_codes(response: httpx.Response) -> set[str]:
    """The `errors[].code` of a distribution error body."""
    try:
        body = json.loads(await response.aread())
    except (ValueError, httpx.HTTPError):
        return set()
    if not isinstance(body, dict) or not isinstance(body.get("errors"), list):
        return set()
    return {e.get("code", "") for e in body.get("errors", []) if isinstance(e, dict)}


def _verify(data: bytes, digest: str, what: str) -> None:
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise DigestMismatch(f"{what} does not match its digest {digest}")


def _json(data: bytes, ref: Reference) -> dict[str, Any]:
    try:
        body = json.loads(data)
    except ValueError:
        raise InvalidManifest(f"{ref.familiar}: the manifest is not JSON") from None
    if not isinstance(body, dict):
        raise InvalidManifest(f"{ref.familiar}: the manifest is not a JSON object")
    if body.get("schemaVersion") != 2:
        raise InvalidManifest(f"{ref.familiar}: only schema 2 manifests are supported")
    return body


def _list(body: dict[str, Any], key: str, ref: Reference) -> list[Any]:
    value = body.get(key)
    if not isinstance(value, list):
        raise InvalidManifest(f"{ref.familiar}: the manifest has no {key} list")
    return value


def _descriptor(item: Any, ref: Reference) -> oci.Descriptor:
    if not isinstance(item, dict):
        raise InvalidManifest(f"{ref.familiar}: a descriptor is not an object")
    media_type, digest, size = item.get("mediaType"), item.get("digest"), item.get("size")
    if not isinstance(digest, str) or not oci.DIGEST.match(digest):
        raise InvalidManifest(f"{ref.familiar}: unsupported digest {digest!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidManifest(f"{ref.familiar}: descriptor {digest} has a bad size")
    return oci.Descriptor(media_type if isinstance(media_type, str) else "", digest, size)


def _pick_platform(ref: Reference, index: dict[str, Any], platform: oci.Platform) -> oci.Descriptor:
    """The index entry for `platform` (variant must match when both name one)."""
    offered: list[str] = []
    for item in _list(index, "manifests", ref):
        plat = item.get("platform") if isinstance(item, dict) else None
        if not isinstance(plat, dict):
            continue
        have = oci.Platform(
            str(plat.get("os", "")), str(plat.get("architecture", "")), plat.get("variant")
        )
        if have.os == "unknown":  # buildkit's attestation manifests
            continue
        if (have.os, have.architecture) == (platform.os, platform.architecture) and (
            platform.variant is None or have.variant in (None, platform.variant)
        ):
            return _descriptor(item, ref)
        offered.append(str(have))
    has = ", ".join(sorted(set(offered))) or "no platform at all"
    raise PlatformNotFound(f"no {platform} image in {ref.familiar}, it has {has}")
