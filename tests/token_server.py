"""A Docker registry token server for tests (the `auth: token` flow), run in a namespace.

GET /token?service=..&scope=repository:NAME:pull[,push] answers a JWT signed RS256 (by
`openssl dgst`; the standard library has no RSA) whose `x5c` header carries the certificate
the registry trusts. With right basic credentials every scope asked is granted; anonymous
requests get pull on the public repositories only; wrong credentials get a 401. Every
request is logged, one JSON line each, so tests can count them.
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import subprocess
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenIssuer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        pem = Path(args.cert).read_text()
        body = "".join(line for line in pem.splitlines() if "-----" not in line)
        self.x5c = [body]
        self.users: dict[str, str] = json.loads(Path(args.users).read_text())
        self.public = set(args.public)

    def grant(self, account: str | None, scopes: list[str]) -> list[dict[str, Any]]:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind != "repository":
                continue
            wanted = actions.split(",")
            allowed = wanted if account else [a for a in wanted if a == "pull"]
            if account or name in self.public:
                access.append({"type": kind, "name": name, "actions": allowed})
        return access

    def token(self, account: str | None, scopes: list[str]) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": self.x5c}
        claims = {
            "iss": self.args.issuer,
            "sub": account or "",
            "aud": self.args.service,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": self.grant(account, scopes),
        }
        signing = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", self.args.key],
            input=signing.encode(),
            capture_output=True,
            check=True,
        ).stdout
        return f"{signing}.{_b64url(signature)}"


def make_handler(issuer: TokenIssuer, log: Path) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = parse_qs(url.query)
            account = self._account()
            entry = {"path": url.path, "scope": query.get("scope", []), "account": account}
            with log.open("a") as out:
                out.write(json.dumps(entry) + "\n")
            if url.path != "/token":
                return self._send(404, {"errors": [{"code": "NOT_FOUND"}]})
            if account is False:
                return self._send(401, {"errors": [{"code": "UNAUTHORIZED"}]})
            token = issuer.token(account or None, query.get("scope", []))
            self._send(200, {"token": token, "access_token": token, "expires_in": 300})

        def _account(self) -> str | bool | None:
            """The user of right credentials, None if there are none, False if wrong."""
            header = self.headers.get("Authorization", "")
            if not header.startswith("Basic "):
                return None
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            return user if issuer.users.get(user) == password else False

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("port", "key", "cert", "users", "issuer", "service", "log"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--public", action="append", default=[])
    args = parser.parse_args()
    handler = make_handler(TokenIssuer(args), Path(args.log))
    ThreadingHTTPServer(("127.0.0.1", int(args.port)), handler).serve_forever()


if __name__ == "__main__":
    main()
