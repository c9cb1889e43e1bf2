"""Errors that reach users: each carries one clear line and the HTTP status it maps to."""

from __future__ import annotations


class HyprError(Exception):
    """An expected failure, reported to the user as one line; never a traceback."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(HyprError):
    status = 400


class NotFound(HyprError):
    status = 404


class Conflict(HyprError):
    status = 409


class Exhausted(HyprError):
    """A pool (addresses, ports, device names) has nothing left to give."""

    status = 409


class InternalError(HyprError):
    """hyprd itself failed (e.g. out of file descriptors): not the request's fault, so a
    5xx, still with one clear line."""

    status = 503
