"""The Docker face's streams without a VM: stdcopy framing, the console filter and tail,
the console follower, exec instances, and the hijack of the h11 server (half-close,
pipelined bytes, keep-alive after a body, 101 against 200)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request, Response
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from hypr.api.docker.http import DockerServer
from hypr.api.docker.streams import STDERR, STDOUT, Output, frame, hijack, unframe
from hypr.daemon.console import ConsoleFilter, RunWatch, last_lines, read_console
from hypr.daemon.execs import EXEC_RETENTION, ExecConfig, ExecRegistry
from hypr.errors import NotFound
from hypr.state.vms import VmRecord, VmSpec

# --- stdcopy framing -------------------------------------------------------------------


def test_frame_header_layout() -> None:
    assert frame(STDOUT, b"hi\n") == b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n"
    assert frame(STDERR, b"x" * 258)[:8] == b"\x02\x00\x00\x00\x00\x00\x01\x02"
    with pytest.raises(ValueError):
        frame(3, b"x")


@given(st.lists(st.tuples(st.sampled_from([STDOUT, STDERR]), st.binary(max_size=300))))
def test_frames_round_trip_at_any_cut(chunks: list[tuple[int, bytes]]) -> None:
    data = b"".join(frame(stream, chunk) for stream, chunk in chunks)
    for cut in {0, len(data) // 3, len(data)}:
        first, rest = unframe(data[:cut])
        second, tail = unframe(rest + data[cut:])
        assert tail == b""
        assert first + second == chunks


# --- the console ------------------------------------------------------------------------

KERNEL = b"[    1.234567] virtio_net: probe\n"


def feed_all(pieces: list[bytes], kernel: bool = False) -> bytes:
    console = ConsoleFilter(kernel)
    return b"".join(console.feed(piece) for piece in pieces) + console.flush()


def test_console_filter_drops_kernel_lines() -> None:
    assert feed_all([b"hello\n" + KERNEL + b"bye\n"]) == b"hello\nbye\n"
    assert feed_all([b"hello\n" + KERNEL], kernel=True) == b"hello\n" + KERNEL
    assert feed_all([b"[not kernel] x\n"]) == b"[not kernel] x\n"


@given(st.data())
def test_console_filter_does_not_care_where_reads_cut(data: st.DataObject) -> None:
    text = b"a\n" + KERNEL + b"[1] b\n" + KERNEL + b"progress 50%\rprogress 100%" + b"\n[ 2.5"
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=6)))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    assert feed_all(pieces) == b"a\n[1] b\nprogress 50%\rprogress 100%\n[ 2.5"


def test_console_filter_passes_unfinished_lines_at_once() -> None:
    console = ConsoleFilter()
    assert console.feed(b"Password: ") == b"Password: "  # a prompt is not held back
    assert console.feed(b"x\n[   3.1") == b"x\n"  # a line start that may be the kernel's
    assert console.feed(b"41] oops\nok\n") == b"ok\n"


def test_last_lines() -> None:
    assert last_lines(b"a\nb\nc\n", 2) == b"b\nc\n"
    assert last_lines(b"a\nb\nc", 1) == b"c"
    assert last_lines(b"a\nb\n", 5) == b"a\nb\n"
    assert last_lines(b"a\nb\n", 0) == b""


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 10))


async def collect(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


def test_read_console_tail_and_follow(tmp_path: Path) -> None:
    run(_test_read_console_tail_and_follow(tmp_path))


async def _test_read_console_tail_and_follow(tmp_path: Path) -> None:
    log = tmp_path / "vm.log"
    log.write_bytes(b"one\n" + KERNEL + b"two\nthree\n")
    assert await collect(read_console(log, tail=2)) == b"two\nthree\n"
    assert await collect(read_console(tmp_path / "missing.log")) == b""

    running = True

    async def writer() -> None:
        nonlocal running
        await asyncio.sleep(0.2)
        with log.open("ab") as handle:
            handle.write(b"four\n")
        running = False  # what was written before the stop is still read

    task = asyncio.create_task(writer())
    got = await collect(read_console(log, from_end=True, follow=lambda: running))
    await task
    assert got == b"four\n"


def test_read_console_waits_for_a_log_not_written_yet(tmp_path: Path) -> None:
    run(_test_read_console_waits_for_a_log_not_written_yet(tmp_path))


async def _test_read_console_waits_for_a_log_not_written_yet(tmp_path: Path) -> None:
    log = tmp_path / "vm.log"
    state = {"running": True}

    async def boot() -> None:
        await asyncio.sleep(0.2)
        log.write_bytes(b"first run\n")
        state["running"] = False

    task = asyncio.create_task(boot())
    assert await collect(read_console(log, from_end=True, follow=lambda: state["running"])) == (
        b"first run\n"
    )
    await task


def test_run_watch_follows_the_run_under_way_or_the_next() -> None:
    rows: dict[str, VmRecord] = {"v": record("created", None)}
    running: set[str] = set()
    watch = RunWatch("v", running.__contains__, rows.get)
    assert watch()  # created: waits for the start (`docker run` attaches first)
    rows["v"] = record("starting", "t1")
    assert watch()
    running.add("v")
    rows["v"] = record("running", "t1")
    assert watch()
    running.discard("v")
    rows["v"] = record("exited", "t1")
    assert not watch()  # the run it saw has ended

    missed = RunWatch("v", running.__contains__, rows.get)  # attached to an exited VM
    assert missed()
    rows["v"] = record("exited", "t2")  # a whole run between two looks
    assert not missed()
    del rows["v"]
    assert not RunWatch("v", running.__contains__, rows.get)()  # removed


def record(state: str, started_at: str | None) -> VmRecord:
    spec = VmSpec(argv=["true"])
    return VmRecord("v", "v", "busybox", spec, state, "t0", started_at=started_at)


# --- exec instances ---------------------------------------------------------------------


class FakeSession:
    def __init__(self, code: int) -> None:
        self.code = code

    def __aiter__(self) -> AsyncIterator[tuple[str, bytes]]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[tuple[str, bytes]]:
        yield "stdout", b"out"

    async def wait(self) -> int:
        return self.code


class FakeAgent:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def open_exec(self, *args: Any, **kwargs: Any) -> FakeSession:
        self.calls.append({"args": args, **kwargs})
        return FakeSession(3)


def test_exec_registry_lifecycle() -> None:
    run(_test_exec_registry_lifecycle())


async def _test_exec_registry_lifecycle() -> None:
    now = [1000.0]
    registry = ExecRegistry(clock=lambda: now[0])
    agent = FakeAgent()
    instance = registry.create("vm1", ExecConfig(argv=("true",), tty=True), None)
    assert registry.get(instance.id) is instance
    with pytest.raises(NotFound, match="No such exec instance"):
        registry.get("nope")

    await registry.start(instance.id, agent, detach=True)  # type: ignore[arg-type]
    assert agent.calls[0]["tty"] is True
    await asyncio.wait_for(instance.done.wait(), 5)
    assert (instance.exit_code, instance.running) == (3, False)
    with pytest.raises(Exception, match="already run"):
        await registry.start(instance.id, agent, detach=True)  # type: ignore[arg-type]

    now[0] += EXEC_RETENTION + 1  # ended long enough ago: forgotten, as Docker does
    with pytest.raises(NotFound):
        registry.get(instance.id)


# --- the hijack -------------------------------------------------------------------------


class Body(BaseModel):
    n: int = 0


def echo_app() -> FastAPI:
    """POST /echo hijacks and echoes until EOF, then writes "bye" (after a half-close the
    writer still works); POST /json answers a body after a pause (keep-alive)."""
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request, body: Body) -> Response:
        reader, writer = await hijack(request, "application/x-test")
        output = Output(writer, tty=True)
        while data := await reader.read(65536):
            await output.write("stdout", data)
        await output.write("stdout", b"bye")
        return Response()

    @app.post("/json")
    async def json_body(body: Body) -> dict[str, int]:
        await asyncio.sleep(0.01)  # lets the server's disconnect watcher start reading
        return {"n": body.n}

    return app


def post(path: str, body: bytes, upgrade: bool = True) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\n"
    if upgrade:
        head += "Connection: Upgrade\r\nUpgrade: tcp\r\n"
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


async def read_all(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.read(), 5)


Connect = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


def with_server(tmp_path: Path, test: Callable[[Connect], Awaitable[None]]) -> None:
    async def main() -> None:
        server = DockerServer(echo_app())
        await server.listen_unix(tmp_path / "docker.sock")

        async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            return await asyncio.open_unix_connection(str(tmp_path / "docker.sock"))

        try:
            await test(connect)
        finally:
            await server.stop()

    run(main())


def test_hijack_with_half_close_and_pipelined_stdin(tmp_path: Path) -> None:
    with_server(tmp_path, _test_hijack_with_half_close_and_pipelined_stdin)


async def _test_hijack_with_half_close_and_pipelined_stdin(connect: Connect) -> None:
    reader, writer = await connect()
    writer.write(post("/echo", b'{"n": 1}') + b"pipelined ")  # stdin right behind the request
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 UPGRADED\r\n")
    assert b"Content-Type: application/x-test\r\n" in head and b"Upgrade: tcp\r\n" in head
    writer.write(b"stdin")
    writer.write_eof()  # the CLI's CloseWrite at stdin EOF
    assert await read_all(reader) == b"pipelined stdinbye"
    writer.close()


def test_hijack_without_upgrade_answers_200(tmp_path: Path) -> None:
    with_server(tmp_path, _test_hijack_without_upgrade_answers_200)


async def _test_hijack_without_upgrade_answers_200(connect: Connect) -> None:
    reader, writer = await connect()
    writer.write(post("/echo", b"{}", upgrade=False))
    writer.write_eof()
    data = await read_all(reader)
    assert data.startswith(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-test\r\n\r\n")
    assert data.endswith(b"\r\n\r\nbye")
    writer.close()


def test_keep_alive_after_a_request_body(tmp_path: Path) -> None:
    with_server(tmp_path, _test_keep_alive_after_a_request_body)


async def _test_keep_alive_after_a_request_body(connect: Connect) -> None:
    """The disconnect watcher that reads after a body must be gone before the next read."""
    reader, writer = await connect()
    for n in range(3):
        writer.write(post("/json", b'{"n": %d}' % n, upgrade=False))
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200")
        assert await asyncio.wait_for(reader.readexactly(7), 5) == b'{"n":%d}' % n
    writer.close()


def test_output_tells_a_half_close_from_a_close() -> None:
    run(_test_output_tells_a_half_close_from_a_close())


async def _test_output_tells_a_half_close_from_a_close() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    _, writer = await asyncio.open_unix_connection(sock=ours)
    output = Output(writer, tty=False)
    theirs.shutdown(socket.SHUT_WR)  # the CLI's CloseWrite: still listening
    assert not output.client_gone()
    await output.write("stderr", b"err")
    assert theirs.recv(100) == frame(STDERR, b"err")
    theirs.close()
    assert output.client_gone()
    writer.close()
