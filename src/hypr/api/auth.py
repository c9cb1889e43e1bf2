"""The REST gateway's bearer-key gate (Hyperfleet's `Authorization: Bearer ...`).

The Unix socket is guarded by file permissions (mode 0660); the TCP gateway on port 41001
accepts a request only with a key made by `hypr apikey create` (see daemon/apikeys.py).
Keys are managed over the Unix socket only.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

from hypr.daemon.apikeys import ApiKeys


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
