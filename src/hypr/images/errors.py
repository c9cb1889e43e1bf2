"""Errors of pulling images: each one clear line, with the HTTP status hyprd answers."""

from __future__ import annotations

from hypr.errors import HyprError, NotFound


class Unauthorized(HyprError):
    """The registry refused the credentials, or wants some and none were given."""

    status = 401


class ImageNotFound(NotFound):
    """The registry has no such repository, tag or digest."""


class PlatformNotFound(ImageNotFound):
    """The image exists, but not for the host's platform."""


class RegistryUnavailable(HyprError):
    """The registry cannot be reached or answered something unusable: a bad gateway."""

    status = 502


class InvalidManifest(RegistryUnavailable):
    """The registry served a manifest or index that is not one we can use."""


class DigestMismatch(HyprError):
    """Content whose bytes do not hash to the digest it was asked for: never trusted."""

    status = 502
