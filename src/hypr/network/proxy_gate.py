"""hyprd's side of the subdomain proxy: HAProxy sends it every request whose Host has no
route, one request per connection (hypr.network.proxy_config).

The gate asks the daemon what the host names (`decide`): a page to answer (404 for a name
that is no VM, 502 for a VM that is not running), or the address of a VM that runs but has
no route yet (it has just started, or the daemon has just woken it from sleep): the gate
then replays the request to it and joins the two connections, so an upgrade to WebSocket
passes as well as a plain request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from hypr.splice import splice

log = logging.getLogger(__name__)

MAX_HEAD = 64 * 1024
CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class Page:
    """An answer of the proxy's own: a status and one line that says what and why."""

    status: int
    reason: str
    text: str


@dataclass(frozen=True)
class Upstream:
    """A VM's server, where the request goes."""

    vm: str
    address: str
    port: int


Decide = Callable[[str], Awaitable[Page | Upstream]]


class ProxyGate:
    """A small HTTP/1.1 server on a Unix socket that only HAProxy speaks to."""

    def __init__(self, path: Path, decide: Decide) -> None:
        self.path = path
        self.decide = decide
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self.path.unlink(missing_ok=True)
        self._server = await asyncio.start_unix_server(self._serve, self.path)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            writer.close()
            return
        host = _host(head)
        try:
            answer = await self.decide(host)
        except Exception:  # a page, not a dropped connection, whatever went wrong
            log.exception("the proxy gate could not decide on %r", host)
            answer = Page(500, "Internal Server Error", f"hyprd failed on {host}: see its log")
        if isinstance(answer, Upstream):
            await _relay(head, reader, writer, answer)
        else:
            await _answer(writer, answer)


def _host(head: bytes) -> str:
    """The Host header's name, without a port, lowercased ("" when there is none)."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"host":
            return value.strip().decode(errors="replace").rsplit(":", 1)[0].lower()
    return ""


async def _answer(writer: asyncio.StreamWriter, page: Page) -> None:
    body = f"{page.text}\n".encode()
    writer.write(
        f"HTTP/1.1 {page.status} {page.reason}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    with contextlib.suppress(OSError):
        await writer.drain()
    writer.close()


async def _relay(
    head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, to: Upstream
) -> None:
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            up_reader, up_writer = await asyncio.open_connection(to.address, to.port)
    except TimeoutError:
        page = Page(504, "Gateway Timeout", f"VM {to.vm}, port {to.port}: no connection in time")
        await _answer(writer, page)
        return
    except OSError as exc:
        page = Page(502, "Bad Gateway", f"VM {to.vm}, port {to.port}: {exc.strerror or exc}")
        await _answer(writer, page)
        return
    up_writer.write(head)
    await splice(reader, writer, up_reader, up_writer)
