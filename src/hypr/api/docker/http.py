"""An HTTP/1.1 server for the Docker face: ASGI like uvicorn, plus Docker's hijack.

Docker's `attach` and `exec start` answer `101 UPGRADED` (`Upgrade: tcp`) and then use the
connection as a raw, two-way byte stream; uvicorn only knows WebSocket upgrades. This server
parses with h11 and runs the same ASGI app, and gives each request an extension,
`scope["extensions"]["hypr.hijack"]`: awaiting it sends the 101 and returns the connection's
reader and writer. A handler that hijacks owns the connection and sends no ASGI response;
the connection is closed when the handler returns. As Docker's own server, it answers
`101 UPGRADED` to a request with an `Upgrade` header and `200 OK` (then the raw stream
until the close) to one without; the handler names the stream's Content-Type. A client
may half-close its side (the `docker` CLI does at stdin's EOF, or at once when it sends
none): the reader sees EOF while the writer still works.

`receive()` reports `http.disconnect` when the client goes away, also while a long poll or
a followed log is being answered (docker's `run -d` never reads its `wait`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import h11
from starlette.types import ASGIApp, Message

log = logging.getLogger(__name__)

HIJACK = "hypr.hijack"
READ_SIZE = 65536
RAW_STREAM = "application/vnd.docker.raw-stream"
Hijack = Callable[..., Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


class _Exchange:
    """One request and its response on a connection."""

    def __init__(self, conn: _Connection, request: h11.Request) -> None:
        self.conn = conn
        self.request = request
        self.body_done = False
        self.response_started = False
        self.response_done = False
        self.hijacked = False
        self.disconnected = asyncio.Event()

    def scope(self) -> dict[str, Any]:
        target = self.request.target
        path, _, query = target.partition(b"?")
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": self.request.method.decode(),
            "scheme": "http",
            "path": path.decode("latin-1"),
            "raw_path": path,
            "query_string": query,
            "root_path": "",
            "headers": [(name.lower(), value) for name, value in self.request.headers],
            "client": None,
            "server": None,
            "extensions": {HIJACK: self.hijack},
        }

    async def receive(self) -> Message:
        if not self.body_done:
            event = await self.conn.next_event()
            if isinstance(event, h11.Data):
                return {"type": "http.request", "body": bytes(event.data), "more_body": True}
            self.body_done = True
            if isinstance(event, h11.EndOfMessage):
                self.conn.watch_disconnect(self.disconnected)
                return {"type": "http.request", "body": b"", "more_body": False}
            self.disconnected.set()
        await self.disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self.hijacked or self.disconnected.is_set():
            return
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", [])]
            self.response_started = True
            await self.conn.write(h11.Response(status_code=message["status"], headers=headers))
        elif message["type"] == "http.response.body":
            body = message.get("body", b"")
            if body:
                await self.conn.write(h11.Data(data=body))
            if not message.get("more_body", False):
                await self.conn.write(h11.EndOfMessage())
                self.response_done = True

    async def hijack(
        self, content_type: str = RAW_STREAM
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Answer 101 (200 without `Upgrade`) and hand over the raw connection (what was
        read past the request is put back in front of the reader)."""
        if self.response_started:
            raise RuntimeError("cannot hijack after the response started")
        while not self.body_done:
            await self.receive()
        await self.conn.stop_watching()
        self.hijacked = True
        if any(name.lower() == b"upgrade" for name, _ in self.request.headers):
            status = b"101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp"
        else:
            status = b"200 OK"
        head = b"HTTP/1.1 %s\r\nContent-Type: %s\r\n\r\n" % (status, content_type.encode())
        self.conn.writer.write(head)
        await self.conn.writer.drain()
        return self.conn.raw_reader(), self.conn.writer


class _Connection:
    def __init__(
        self, app: ASGIApp, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.app = app
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.SERVER)
        self._watcher: asyncio.Task[None] | None = None
        self._pending = b""  # read by the disconnect watcher, not yet given to h11

    async def next_event(self) -> Any:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = self._pending or await self.reader.read(READ_SIZE)
            self._pending = b""
            self.h11.receive_data(data)

    def watch_disconnect(self, disconnected: asyncio.Event) -> None:
        """Once a request is read, any EOF means the client is gone."""

        async def watch() -> None:
            try:
                data = await self.reader.read(READ_SIZE)
            except ConnectionError:  # reset: gone with our answer unread (`docker run -d`)
                data = b""
            if data:
                self._pending = data  # a pipelined request: h11 gets it later
            else:
                disconnected.set()

        self._watcher = asyncio.create_task(watch())

    async def stop_watching(self) -> None:
        """Cancel the watcher and wait for it: until it is gone, its read holds the reader
        (a second read would raise), and what it read is in `_pending` only after."""
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    def raw_reader(self) -> asyncio.StreamReader:
        """The connection's reader with the bytes h11 or the watcher already took first."""
        leftover = self._pending + bytes(self.h11.trailing_data[0])
        if leftover:
            self.reader._buffer[:0] = leftover  # type: ignore[attr-defined]
        return self.reader

    async def write(self, event: Any) -> None:
        data = self.h11.send(event)
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def serve(self) -> None:
        try:
            while True:
                event = await self.next_event()
                if isinstance(event, h11.ConnectionClosed):
                    return
                if not isinstance(event, h11.Request):
                    return
                exchange = _Exchange(self, event)
                await self._run(exchange)
                await self.stop_watching()
                if exchange.hijacked or exchange.disconnected.is_set():
                    return
                if not exchange.body_done and not await self._drain_body():
                    return
                if self.h11.our_state is h11.MUST_CLOSE or self.h11.their_state is h11.MUST_CLOSE:
                    return
                self.h11.start_next_cycle()
        except (h11.RemoteProtocolError, ConnectionError):
            return
        finally:
            await self.stop_watching()
            with contextlib.suppress(Exception):
                self.writer.close()
                await self.writer.wait_closed()

    async def _drain_body(self) -> bool:
        """Read past a request body the app did not want; False if the request broke off."""
        while True:
            event = await self.next_event()
            if isinstance(event, h11.EndOfMessage):
                return True
            if not isinstance(event, h11.Data):
                return False

    async def _run(self, exchange: _Exchange) -> None:
        try:
            await self.app(exchange.scope(), exchange.receive, exchange.send)
        except Exception:
            log.exception("Docker API request failed")
            if not exchange.response_started and not exchange.hijacked:
                body = b'{"message":"internal server error"}'
                await exchange.send(
                    {"type": "http.response.start", "status": 500,
                     "headers": [(b"content-type", b"application/json"),
                                 (b"content-length", str(len(body)).encode())]}
                )  # fmt: skip
                await exchange.send({"type": "http.response.body", "body": body})
            return
        if exchange.hijacked:
            return
        if not exchange.response_done and not exchange.disconnected.is_set():
            raise ConnectionError("the app ended without a complete response")


class DockerServer:
    """Serves an ASGI app, with hijack support, on a Unix socket or a TCP address."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._server: asyncio.Server | None = None
        self._path: Path | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def listen_unix(self, path: Path) -> None:
        path.unlink(missing_ok=True)  # noqa: ASYNC240 - once, at start-up
        self._path = path
        self._server = await asyncio.start_unix_server(self._accept, path=str(path))

    async def listen_tcp(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._accept, host, port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await _Connection(self.app, reader, writer).serve()
        except asyncio.CancelledError:
            pass  # stop(): a cancelled connection task would be logged as a failure
        finally:
            self._connections.discard(task)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        if self._path is not None:
            self._path.unlink(missing_ok=True)
