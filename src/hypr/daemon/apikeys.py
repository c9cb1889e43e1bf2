"""The REST gateway's API keys: made by `hypr apikey create`, shown once, stored as
SHA-256 hashes, checked by the gateway's gate (api/auth.py)."""

from __future__ import annotations

import hashlib
import re
import secrets

from hypr.errors import Conflict, InvalidArgument, NotFound
from hypr.network.names import now_rfc3339
from hypr.state.apikeys import ApiKeyRecord, ApiKeyRepository

KEY_PREFIX = "hypr_"
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeys:
    """Creates, lists, revokes and checks keys."""

    def __init__(self, repo: ApiKeyRepository) -> None:
        self.repo = repo

    def create(self, name: str) -> str:
        if not _NAME.match(name):
            raise InvalidArgument(f"invalid key name {name!r}: letters, digits, '_', '.', '-'")
        if self.repo.exists(name):
            raise Conflict(f"an API key named {name} exists already")
        key = KEY_PREFIX + secrets.token_hex(24)
        self.repo.add(name, key[: len(KEY_PREFIX) + 6], _digest(key), now_rfc3339())
        return key

    def revoke(self, name: str) -> None:
        if not self.repo.remove(name):
            raise NotFound(f"no API key named {name}")

    def all(self) -> list[ApiKeyRecord]:
        return self.repo.all()

    def check(self, key: str) -> bool:
        return key.startswith(KEY_PREFIX) and self.repo.touch(_digest(key), now_rfc3339())
