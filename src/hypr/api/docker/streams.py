"""Docker's output streams: the stdcopy framing of stdout and stderr, the media types that
announce it, and writing to a hijacked connection whose client may have gone.

Without a TTY Docker multiplexes stdout and stderr on one byte stream: each chunk is
preceded by an 8-byte header `[stream, 0, 0, 0, size as big-endian uint32]` (stream 1
stdout, 2 stderr). With a TTY there is one stream and it goes raw.
"""

from __future__ import annotations

import asyncio
import select
import struct
from collections.abc import AsyncIterator
from typing import Literal, cast

from fastapi import Request

from hypr.api.docker.http import HIJACK, RAW_STREAM, Hijack
from hypr.api.docker.versions import at_least
from hypr.errors import HyprError

STDOUT = 1
STDERR = 2
MULTIPLEXED_STREAM = "application/vnd.docker.multiplexed-stream"
_HEADER = struct.Struct(">BxxxL")
MAX_FRAME = 0xFFFFFFFF

StreamName = Literal["stdout", "stderr"]
_NUMBERS: dict[StreamName, int] = {"stdout": STDOUT, "stderr": STDERR}


def frame(stream: int, data: bytes) -> bytes:
    """One stdcopy frame (the caller keeps `data` under 4 GiB: chunks are far smaller)."""
    if stream not in (STDOUT, STDERR) or len(data) > MAX_FRAME:
        raise ValueError(f"cannot frame {len(data)} bytes for stream {stream}")
    return _HEADER.pack(stream, len(data)) + data


def unframe(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """The whole frames at the start of `data`, and the rest (an incomplete frame)."""
    frames: list[tuple[int, bytes]] = []
    offset = 0
    while len(data) - offset >= _HEADER.size:
        stream, size = _HEADER.unpack_from(data, offset)
        end = offset + _HEADER.size + size
        if len(data) < end:
            break
        frames.append((stream, data[offset + _HEADER.size : end]))
        offset = end
    return frames, data[offset:]


def media_type(request: Request, tty: bool) -> str:
    """Docker's rule: the multiplexed type is announced from API 1.42 on, and only when
    the stream is framed."""
    return MULTIPLEXED_STREAM if not tty and at_least(request, "1.42") else RAW_STREAM


async def framed(chunks: AsyncIterator[bytes], stream: int) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        yield frame(stream, chunk)


def hijacker(request: Request) -> Hijack:
    """The server's hijack, asked for before anything is started: a server without one
    (not the Docker socket's) fails the request while nothing has happened yet."""
    take = request.scope.get("extensions", {}).get(HIJACK)
    if take is None:
        raise HyprError("this endpoint needs the Docker socket: its server hijacks connections")
    return cast(Hijack, take)


async def hijack(
    request: Request, content_type: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Take the connection over (101 UPGRADED) for a two-way raw stream."""
    return await hijacker(request)(content_type)


class Output:
    """The client's side of a hijacked stream: framed or raw, and once the client is gone,
    writes are dropped (the caller still reads its source to the end, so nothing piles up
    in the daemon)."""

    def __init__(self, writer: asyncio.StreamWriter, tty: bool) -> None:
        self.writer = writer
        self.tty = tty
        self.gone = False

    async def write(self, stream: StreamName, data: bytes) -> None:
        if self.gone or not data:
            return
        self.writer.write(data if self.tty else frame(_NUMBERS[stream], data))
        try:
            await self.writer.drain()
        except (ConnectionError, OSError):
            self.gone = True

    def client_gone(self) -> bool:
        """True once the client closed the connection both ways. A half-close (the CLI's
        at stdin EOF) leaves it here; on a Unix socket the kernel tells the full close
        apart (POLLHUP), elsewhere only a failed write does."""
        if self.gone or self.writer.is_closing():
            return True
        sock = self.writer.get_extra_info("socket")
        if sock is None:
            return False
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLHUP)
        self.gone = any(events & select.POLLHUP for _, events in poller.poll(0))
        return self.gone
