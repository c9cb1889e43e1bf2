"""The REST gateway's API keys (Hyperfleet's `Authorization: Bearer ...`).

The Unix socket is guarded by file permissions (mode 0660); the TCP gateway on port 41001
accepts a request only with a key made by `hypr apikey create`. Keys are shown once and
stored as SHA-256 hashes. Keys are managed over the Unix socket only.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets

from starlette.types import ASGIApp, Receive, Scope, Send

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


class BearerAuth:
    """ASGI gate in front of the TCP gateway: a valid key, and no key management."""

    def __init__(self, app: ASGIApp, keys: ApiKeys) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        scheme, _, key = headers.get(b"authorization", b"").decode(errors="replace").partition(" ")
        if scope["path"].startswith("/apikeys"):
            await _deny(scope, send, 403, "API keys are managed over the Unix socket only")
        elif scheme.lower() != "bearer" or not self.keys.check(key.strip()):
            await _deny(
                scope,
                send,
                401,
                "a valid API key is required: "
                "Authorization: Bearer <key> (make one with `hypr apikey create`)",
            )
        else:
            await self.app(scope, receive, send)


async def _deny(scope: Scope, send: Send, status: int, message: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 4000 + status})
        return
    body = json.dumps({"message": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")],
        }
    )
    await send({"type": "http.response.body", "body": body})
