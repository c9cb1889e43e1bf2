"""The CLI's only way to the daemon: HTTP over hyprd's Unix socket.

Built on the standard library's http.client, not a full HTTP client library: a command's
start-up time is mostly imports, and these calls need no more than one connection.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode

from hypr.config import run_dir

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 60.0
CUT_SHORT = "lost the connection to the hypr daemon before it finished"


class ClientError(Exception):
    """A failure to show the user as one line."""


class DaemonUnavailable(ClientError):
    pass


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: Path, timeout: float | None) -> None:
        super().__init__("hypr")
        self.socket_path = socket_path
        self.read_timeout = timeout

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(CONNECT_TIMEOUT)
            sock.connect(str(self.socket_path))
            sock.settimeout(self.read_timeout)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class Response:
    """A response whose body is read as it arrives (chunked or not)."""

    def __init__(self, raw: http.client.HTTPResponse) -> None:
        self.raw = raw
        self.status_code = raw.status

    def iter_bytes(self) -> Iterator[bytes]:
        while chunk := self.raw.read1(65536):
            yield chunk

    def iter_lines(self) -> Iterator[str]:
        """Lines without their ends; built on iter_bytes, so a body cut short raises (the
        response's own readline would end quietly)."""
        pending = b""
        for chunk in self.iter_bytes():
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                yield line.decode(errors="replace").removesuffix("\r")
        if pending:
            yield pending.decode(errors="replace")


class ApiClient:
    """A typed wrapper over hyprd's REST API."""

    def __init__(self, socket_path: Path | None = None) -> None:
        self.socket_path = socket_path or run_dir() / "hypr.sock"

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request; return the decoded JSON body, or raise ClientError with the
        daemon's message."""
        with self.stream(method, path, **kwargs) as response:
            body = response.raw.read()
            if response.status_code == 204 or not body:
                return None
            if response.raw.getheader("content-type", "").startswith("application/json"):
                return json.loads(body)
            return body.decode(errors="replace")

    @contextmanager
    def stream(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        json: Any = None,
        timeout: float | None = READ_TIMEOUT,
        headers: dict[str, str] | None = None,
        content: IO[bytes] | None = None,
    ) -> Iterator[Response]:
        """A response to read as it comes; `timeout=None` waits for ever between reads
        (a followed log, a stack that takes long to come up). `content` is a body to send
        as it is (a build context), its headers the caller's; a list in `params` is a
        repeated query parameter (`t=a&t=b`)."""
        if params:
            path += "?" + urlencode(
                {k: [_query_value(x) for x in v] if isinstance(v, list) else _query_value(v)
                 for k, v in params.items()},
                doseq=True,
            )  # fmt: skip
        headers = {"Host": "hypr", **(headers or {})}
        body: bytes | IO[bytes] | None = content
        if json is not None:
            body = _json_dumps(json)
            headers["Content-Type"] = "application/json"
        conn = _UnixConnection(self.socket_path, timeout)
        try:
            with self._translate_errors():
                conn.request(method, path, body=body, headers=headers)
                response = Response(conn.getresponse())
                if response.status_code >= 400:
                    _raise_for(response.status_code, response.raw.read())
                yield response
        finally:
            conn.close()

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)

    @contextmanager
    def _translate_errors(self) -> Iterator[None]:
        try:
            yield
        except (FileNotFoundError, ConnectionRefusedError):
            raise DaemonUnavailable(
                f"cannot connect to the hypr daemon at unix://{self.socket_path}: is hyprd running?"
            ) from None
        except TimeoutError:
            raise ClientError("the hypr daemon did not answer in time") from None
        except http.client.IncompleteRead:
            raise ClientError(CUT_SHORT) from None
        except (http.client.HTTPException, OSError) as exc:
            raise ClientError(f"lost the connection to the hypr daemon: {exc}") from None


def _query_value(value: Any) -> str:
    """Booleans as the API expects them (`true`), everything else as text."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _json_dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def _raise_for(status: int, body: bytes) -> None:
    try:
        message = json.loads(body).get("message")
    except (ValueError, AttributeError):
        message = None
    raise ClientError(message or f"daemon answered {status}")
