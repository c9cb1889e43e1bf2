"""The build proxy (the seeds' port 41010): how a RUN step without a network reaches HTTP
and HTTPS, from the host, under the host's own rules, with every request logged.

A forward proxy of the plainest kind: `CONNECT host:port` is answered 200 and spliced;
any other request names an absolute URL, is sent on to its origin in origin form with
`Connection: close`, and the answer flows back. It listens on loopback only; build VMs
reach it through QEMU's per-connection forward (see hypr.build.vm).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from urllib.parse import urlsplit

from hypr.splice import splice

log = logging.getLogger(__name__)
_MAX_HEAD = 64 * 1024


class BuildProxy:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        try:
            await self._forward(head, reader, writer)
        except (OSError, ValueError) as exc:
            log.info("build proxy: %s", exc)
            with contextlib.suppress(OSError):
                writer.write(_answer(502, f"build proxy: {exc}"))
                await writer.drain()
        finally:
            writer.close()

    async def _forward(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        line, _, rest = head.partition(b"\r\n")
        method, target, version = line.decode("latin-1").split(" ", 2)
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            upstream_reader, upstream = await asyncio.open_connection(host, int(port))
            log.info("build proxy: CONNECT %s", target)
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await splice(reader, writer, upstream_reader, upstream)
            return
        url = urlsplit(target)
        if url.scheme != "http" or not url.hostname:
            raise ValueError(f"{method} {target}: the proxy takes absolute http:// URLs")
        upstream_reader, upstream = await asyncio.open_connection(url.hostname, url.port or 80)
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        headers = [h for h in rest.split(b"\r\n") if h and not _hop_by_hop(h)]
        upstream.write(f"{method} {path} {version}\r\n".encode("latin-1"))
        upstream.write(b"\r\n".join([*headers, b"Connection: close", b"", b""]))
        await upstream.drain()
        first = await upstream_reader.readline()
        status = first.split(b" ", 2)[1].decode("latin-1") if first.count(b" ") else "?"
        log.info("build proxy: %s %s -> %s", method, target, status)
        writer.write(first)
        await splice(reader, writer, upstream_reader, upstream)


def _hop_by_hop(header: bytes) -> bool:
    name = header.split(b":", 1)[0].strip().lower()
    return name in (b"connection", b"proxy-connection", b"keep-alive", b"proxy-authorization")


def _answer(status: int, text: str) -> bytes:
    body = (text + "\n").encode()
    return (
        f"HTTP/1.1 {status} Bad Gateway\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
