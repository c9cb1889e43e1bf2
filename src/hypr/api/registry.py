"""/auth: check a user's registry credentials (for `hypr login`); nothing is stored."""

from __future__ import annotations

import base64
import binascii
import json

from fastapi import APIRouter, Request
from pydantic import BaseModel, SecretStr

from hypr.api.deps import daemon_of
from hypr.errors import InvalidArgument
from hypr.images.registry import RegistryAuth

router = APIRouter(tags=["registry"])


class AuthRequest(BaseModel):
    username: str
    password: SecretStr  # never in a repr or a log
    serveraddress: str = "docker.io"


class AuthResponse(BaseModel):
    Status: str


@router.post("/auth")
async def check_auth(body: AuthRequest, request: Request) -> AuthResponse:
    auth = RegistryAuth(body.username, body.password.get_secret_value())
    await daemon_of(request).check_login(body.serveraddress, auth)
    return AuthResponse(Status="Login Succeeded")


def registry_auth(header: str | None) -> RegistryAuth | None:
    """The credentials of an `X-Registry-Auth` header (base64url JSON, as Docker's Engine
    API), or None when there is none."""
    if not header:
        return None
    try:
        padded = header + "=" * (-len(header) % 4)
        body = json.loads(base64.urlsafe_b64decode(padded))
    except (binascii.Error, ValueError):
        raise InvalidArgument("X-Registry-Auth is not base64url-encoded JSON") from None
    if not isinstance(body, dict):
        raise InvalidArgument("X-Registry-Auth is not a JSON object")
    username, password = body.get("username"), body.get("password")
    if not username and not password:
        return None
    if not isinstance(username, str) or not isinstance(password, str):
        raise InvalidArgument("X-Registry-Auth needs a username and a password")
    return RegistryAuth(username, password)
