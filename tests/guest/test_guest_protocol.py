"""Frame codec and AgentClient behaviour, against a scripted fake agent (no VM)."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hypr.guest.protocol import AgentClient
from hypr.guest.wire import (
    MAX_PAYLOAD,
    AgentDisconnected,
    AgentState,
    Frame,
    FrameDecoder,
    FrameType,
    ProtocolError,
    TtySize,
    WorkloadExit,
    decode_records,
    encode_frame,
    encode_records,
    exec_payload,
)


def test_encode_frame_layout() -> None:
    assert encode_frame(FrameType.EXEC, 0x01020304, b"ab") == (
        b"\x02\x01\x02\x03\x04\x00\x00\x00\x02ab"
    )
    assert encode_frame(FrameType.HELLO, 0) == b"\x01" + b"\0" * 8


def test_encode_frame_limits() -> None:
    encode_frame(FrameType.STDIN, 1, b"x" * MAX_PAYLOAD)
    with pytest.raises(ValueError):
        encode_frame(FrameType.STDIN, 1, b"x" * (MAX_PAYLOAD + 1))
    with pytest.raises(ValueError):
        encode_frame(FrameType.STDIN, 2**32, b"")


frames_strategy = st.lists(
    st.builds(
        Frame,
        st.integers(0, 255),
        st.integers(0, 2**32 - 1),
        st.binary(max_size=300),
    ),
    max_size=8,
)


@given(frames_strategy, st.lists(st.integers(1, 50), min_size=1, max_size=10))
def test_decoder_reassembles_any_split(frames: list[Frame], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(f.type, f.session, f.payload) for f in frames)
    decoder = FrameDecoder()
    got: list[Frame] = []
    pos, i = 0, 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        got += decoder.feed(stream[pos : pos + step])
        pos += step
        i += 1
    assert got == frames
    assert decoder.pending == 0


def test_decoder_rejects_oversized_length() -> None:
    with pytest.raises(ProtocolError):
        FrameDecoder().feed(struct.pack(">BII", 0x82, 1, MAX_PAYLOAD + 1))


@given(st.lists(st.tuples(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), st.text())))
def test_records_round_trip(records: list[tuple[str, str]]) -> None:
    records = [(k, v.replace("\0", "")) for k, v in records]
    assert decode_records(encode_records(records)) == records


def test_exec_payload() -> None:
    payload = exec_payload(["sh", "-c", "a=b"], ["K=V"], "/tmp", stdin=True)
    assert payload == b"arg=sh\0arg=-c\0arg=a=b\0env=K=V\0cwd=/tmp\0stdin=1\0"
    assert exec_payload(["true"]) == b"arg=true\0"
    with pytest.raises(ValueError):
        exec_payload([])


def test_exec_payload_with_a_tty() -> None:
    assert exec_payload(["sh"], tty=True) == b"arg=sh\0tty=1\0"
    sized = exec_payload(["sh"], stdin=True, tty=True, size=TtySize(24, 80))
    assert sized == b"arg=sh\0stdin=1\0tty=1\0rows=24\0cols=80\0"
    assert exec_payload(["sh"], size=TtySize(24, 80)) == b"arg=sh\0"  # no pty, no size
    for rows, cols in ((0, 80), (24, 0x10000)):
        with pytest.raises(ValueError):
            TtySize(rows, cols)


def test_state_and_workload_exit_parsing() -> None:
    state = AgentState.from_payload(b"ready=1\0workload=running\0pid=42\0restarts=3\0")
    assert state == AgentState(True, "running", 42, None, 3)
    exited = AgentState.from_payload(b"ready=1\0workload=exited\0exit_code=7\0restarts=0\0")
    assert (exited.workload, exited.exit_code, exited.pid) == ("exited", 7, None)
    event = WorkloadExit.from_payload(b"exit_code=137\0restarting=0\0restarts=2\0")
    assert event == WorkloadExit(137, False, 2)


# ---------------------------------------------------------------------------- fake agent

Handler = Callable[[Frame, asyncio.StreamWriter], Awaitable[None]]


class FakeAgent:
    """A Unix-socket server speaking the guest side of the protocol, scripted per test."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self.received: list[Frame] = []
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._serve, str(self.path))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        decoder = FrameDecoder()
        while data := await reader.read(65536):
            for frame in decoder.feed(data):
                self.received.append(frame)
                await self.handler(frame, writer)
        writer.close()

    async def stop(self) -> None:
        for writer in self.writers:
            writer.close()
        if self.server is not None:
            self.server.close()


def state_frame(hello: Frame | None = None, **fields: str) -> bytes:
    """A STATE frame; pass the HELLO frame to answer it (echoing its nonce)."""
    records = {"ready": "1", "workload": "running", "pid": "9", "restarts": "0", **fields}
    if hello is not None:
        records["hello"] = hello.payload.decode()
    return encode_frame(FrameType.STATE, 0, encode_records(records.items()))


async def echo_agent(frame: Frame, writer: asyncio.StreamWriter) -> None:
    """HELLO -> STATE; EXEC runs `echo`-like: args to STDOUT, stdin to STDERR, exit = argc."""
    if frame.type == FrameType.HELLO:
        writer.write(state_frame(frame))
    elif frame.type == FrameType.EXEC:
        records = decode_records(frame.payload)
        args = [v for k, v in records if k == "arg"]
        writer.write(encode_frame(FrameType.STDOUT, frame.session, " ".join(args).encode()))
        if ("stdin", "1") not in records:
            writer.write(encode_frame(FrameType.EXIT, frame.session, str(len(args)).encode()))
    elif frame.type == FrameType.STDIN:
        if frame.payload:
            writer.write(encode_frame(FrameType.STDERR, frame.session, frame.payload))
        else:
            writer.write(encode_frame(FrameType.EXIT, frame.session, b"0"))
    await writer.drain()


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 10))


def test_connect_retries_until_socket_exists(tmp_path: Path) -> None:
    async def main() -> None:
        agent = FakeAgent(tmp_path / "a.sock", echo_agent)

        async def late_start() -> None:
            await asyncio.sleep(0.3)
            await agent.start()

        starter = asyncio.create_task(late_start())
        client = await asyncio.wait_for(AgentClient.connect(agent.path), 5)
        state = await asyncio.wait_for(client.wait_ready(), 5)
        assert state.ready and state.workload == "running" and state.pid == 9
        hello = agent.received[0]
        assert (hello.type, hello.session, len(hello.payload)) == (FrameType.HELLO, 0, 16)
        await client.close()
        await starter
        await agent.stop()

    run(main())


def test_connect_times_out(tmp_path: Path) -> None:
    async def main() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(AgentClient.connect(tmp_path / "none.sock"), 0.2)

    run(main())


def test_exec_collects_and_runs_concurrently(tmp_path: Path) -> None:
    async def main() -> None:
        agent = FakeAgent(tmp_path / "a.sock", echo_agent)
        await agent.start()
        client = await AgentClient.connect(agent.path)
        results = await asyncio.gather(*(client.exec(["echo", str(i)]) for i in range(20)))
        assert [r.stdout for r in results] == [f"echo {i}".encode() for i in range(20)]
        assert {r.exit_code for r in results} == {2}
        with_stdin = await client.exec(["cat"], stdin=b"x" * 70000)
        assert with_stdin.stderr == b"x" * 70000  # split over two STDIN frames
        stdin_frames = [f for f in agent.received if f.type == FrameType.STDIN]
        assert [len(f.payload) for f in stdin_frames] == [65536, 70000 - 65536, 0]
        await client.close()
        await agent.stop()

    run(main())


def test_streaming_session(tmp_path: Path) -> None:
    async def main() -> None:
        agent = FakeAgent(tmp_path / "a.sock", echo_agent)
        await agent.start()
        client = await AgentClient.connect(agent.path)
        session = await client.open_exec(["cat"], interactive=True)
        await session.write_stdin(b"hello")
        await session.signal(15)
        await session.close_stdin()
        chunks = [chunk async for chunk in session]
        assert chunks == [("stdout", b"cat"), ("stderr", b"hello")]
        assert await session.wait() == 0
        signal_frame = next(f for f in agent.received if f.type == FrameType.SIGNAL)
        assert signal_frame.payload == bytes([15])
        with pytest.raises(ValueError):
            await session.write_stdin(b"late")
        await client.close()
        await agent.stop()

    run(main())


def test_disconnect_fails_pending_sessions(tmp_path: Path) -> None:
    async def silent(frame: Frame, writer: asyncio.StreamWriter) -> None:
        if frame.type == FrameType.HELLO:
            writer.write(state_frame(frame))
        elif frame.type == FrameType.EXEC:
            writer.close()  # the VM went away mid-session

    async def main() -> None:
        agent = FakeAgent(tmp_path / "a.sock", silent)
        await agent.start()
        client = await AgentClient.connect(agent.path)
        session = await client.open_exec(["sleep", "100"])
        with pytest.raises(AgentDisconnected):
            await session.wait()
        with pytest.raises(AgentDisconnected):
            async for _ in session:
                pass
        with pytest.raises(ConnectionError):
            await client.exec(["true"])
        assert not client.connected
        await client.close()
        await agent.stop()

    run(main())


def test_exec_cancelled_by_the_callers_deadline_kills_the_process(tmp_path: Path) -> None:
    signals: list[tuple[int, bytes]] = []
    signalled = asyncio.Event()

    async def hanging(frame: Frame, writer: asyncio.StreamWriter) -> None:
        if frame.type == FrameType.HELLO:
            writer.write(state_frame(frame))
            await writer.drain()
        elif frame.type == FrameType.SIGNAL:  # an EXEC gets no answer: the process hangs
            signals.append((frame.session, frame.payload))
            signalled.set()

    async def main() -> None:
        agent = FakeAgent(tmp_path / "a.sock", hanging)
        await agent.start()
        client = await AgentClient.connect(agent.path)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await client.exec(["sleep", "100"])
        await signalled.wait()
        started = next(f for f in agent.received if f.type == FrameType.EXEC)
        assert signals == [(started.session, bytes([9]))]
        await client.close()
        await agent.stop()

    run(main())


def test_final_workload_exit_hangs_up(tmp_path: Path) -> None:
    events: list[WorkloadExit] = []

    async def exiting(frame: Frame, writer: asyncio.StreamWriter) -> None:
        if frame.type == FrameType.HELLO:
            writer.write(state_frame(frame))
        elif frame.type == FrameType.SHUTDOWN:
            assert frame.payload == b"3"
            again = encode_records([("exit_code", "1"), ("restarting", "1"), ("restarts", "0")])
            final = encode_records([("exit_code", "143"), ("restarting", "0"), ("restarts", "1")])
            writer.write(encode_frame(FrameType.WORKLOAD_EXIT, 0, again))
            writer.write(encode_frame(FrameType.WORKLOAD_EXIT, 0, final))
        await writer.drain()

    async def main() -> None:
        agent = FakeAgent(tmp_path / "a.sock", exiting)
        await agent.start()
        client = await AgentClient.connect(agent.path, on_workload_exit=events.append)
        await asyncio.wait_for(client.wait_ready(), 5)
        final = await client.shutdown(2.5)
        assert final == WorkloadExit(143, False, 1)
        assert events == [WorkloadExit(1, True, 0), final]
        assert not client.connected  # the hang-up is the agent's cue to power off
        await agent.stop()

    run(main())


def test_exited_state_counts_as_final(tmp_path: Path) -> None:
    async def exited(frame: Frame, writer: asyncio.StreamWriter) -> None:
        writer.write(state_frame(frame, workload="exited", exit_code="5", restarts="2"))
        await writer.drain()

    async def main() -> None:
        agent = FakeAgent(tmp_path / "a.sock", exited)
        await agent.start()
        client = await AgentClient.connect(agent.path)
        assert await asyncio.wait_for(client.wait_final_exit(), 5) == WorkloadExit(5, False, 2)
        await agent.stop()

    run(main())


def test_frames_before_the_hello_answer_are_ignored(tmp_path: Path) -> None:
    events: list[WorkloadExit] = []

    async def stale_first(frame: Frame, writer: asyncio.StreamWriter) -> None:
        if frame.type == FrameType.HELLO:
            # Output queued for a previous client, then the answer to this one's HELLO.
            stale_exit = encode_records([("exit_code", "1"), ("restarting", "0")])
            writer.write(encode_frame(FrameType.WORKLOAD_EXIT, 0, stale_exit))
            writer.write(encode_frame(FrameType.STDOUT, 1, b"stale"))
            writer.write(state_frame(workload="exited", exit_code="9"))  # no nonce: stale
            writer.write(state_frame(frame))
        else:
            await echo_agent(frame, writer)
        await writer.drain()

    async def main() -> None:
        agent = FakeAgent(tmp_path / "a.sock", stale_first)
        await agent.start()
        client = await AgentClient.connect(agent.path, on_workload_exit=events.append)
        assert (await asyncio.wait_for(client.wait_ready(), 5)).workload == "running"
        result = await client.exec(["x"])
        assert result.stdout == b"x" and client.connected and events == []
        await client.close()
        await agent.stop()

    run(main())


def test_wait_closed_returns_when_the_agent_hangs_up(tmp_path: Path) -> None:
    async def hang_up(frame: Frame, writer: asyncio.StreamWriter) -> None:
        writer.write(state_frame(frame))
        await writer.drain()
        writer.close()

    async def main() -> None:
        agent = FakeAgent(tmp_path / "a.sock", hang_up)
        await agent.start()
        client = await AgentClient.connect(agent.path)
        await asyncio.wait_for(client.wait_closed(), 5)
        assert not client.connected
        await client.close()
        await client.wait_closed()  # still fine after close()
        await agent.stop()

    run(main())
