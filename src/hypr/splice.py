"""Two TCP streams joined both ways until both ends are done: what the build proxy does
after CONNECT, and what a sleeping VM's port holder does once the VM is awake."""

from __future__ import annotations

import asyncio
import contextlib

_CHUNK = 64 * 1024


async def splice(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    upstream_reader: asyncio.StreamReader,
    upstream: asyncio.StreamWriter,
) -> None:
    """Copy each side to the other (a half-close passes on as one), then close both."""

    async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(_CHUNK):
                sink.write(data)
                await sink.drain()
            if sink.can_write_eof():
                sink.write_eof()

    try:
        await asyncio.gather(pump(reader, upstream), pump(upstream_reader, writer))
    finally:
        upstream.close()
        writer.close()
