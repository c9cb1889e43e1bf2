"""The CLI's only way to the daemon: HTTP over hyprd's Unix socket."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from hypr.config import run_dir


class ClientError(Exception):
    """A failure to show the user as one line."""


class DaemonUnavailable(ClientError):
    pass


class ApiClient:
    """A typed wrapper over hyprd's REST API."""

    def __init__(self, socket_path: Path | None = None, timeout: float = 60.0) -> None:
        self.socket_path = socket_path or run_dir() / "hypr.sock"
        self._http = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.socket_path)),
            base_url="http://hypr",
            timeout=httpx.Timeout(timeout, connect=5.0),
        )

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request; return the decoded JSON body, or raise ClientError with the
        daemon's message."""
        with self._translate_errors():
            response = self._http.request(method, path, **kwargs)
        return self._decode(response)

    @contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        with self._translate_errors(), self._http.stream(method, path, **kwargs) as response:
            if response.status_code >= 400:
                response.read()
                self._decode(response)
            yield response

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)

    def close(self) -> None:
        self._http.close()

    @contextmanager
    def _translate_errors(self) -> Iterator[None]:
        try:
            yield
        except (httpx.ConnectError, FileNotFoundError, ConnectionRefusedError):
            raise DaemonUnavailable(
                f"cannot connect to the hypr daemon at unix://{self.socket_path}: is hyprd running?"
            ) from None
        except httpx.TimeoutException:
            raise ClientError("the hypr daemon did not answer in time") from None
        except httpx.HTTPError as exc:
            raise ClientError(f"lost the connection to the hypr daemon: {exc}") from None

    @staticmethod
    def _decode(response: httpx.Response) -> Any:
        if response.status_code >= 400:
            try:
                message = response.json().get("message")
            except ValueError:
                message = None
            raise ClientError(message or f"daemon answered {response.status_code}")
        if response.status_code == 204 or not response.content:
            return None
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text
