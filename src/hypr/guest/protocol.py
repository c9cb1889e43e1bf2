"""Host side of the kestrel control channel (virtio-serial port "hypr.agent").

Frame, both directions: 1 byte type, u32 BE session id, u32 BE payload length (<= 65536),
payload. Records are NUL-terminated `key=value` strings. See docs/guest-agent.md.

`AgentClient` multiplexes any number of exec sessions over one connection. A conversation
starts with HELLO, whose payload is a nonce that the agent echoes in its STATE reply
(`hello=<nonce>`): the client ignores every frame before that reply (output queued for a
previous client), and only then sends EXECs. HELLO also ends the previous conversation: the
agent kills its exec sessions. When the connection drops, pending sessions fail here with
`AgentDisconnected`. The workload is independent of the connection.

QEMU's socket chardev serves one client at a time; a second connection waits until the
first is closed. If `wait_ready` times out on a VM that is known to run, close the client and
connect again (a QEMU quirk can leave a port stuck for the rest of one connection).

Workload events: pass `on_workload_exit` (called for every WORKLOAD_EXIT frame, restarting or
not) and/or `await client.wait_final_exit()` (the exit after which the VM powers off). When the
final exit arrives the client hangs up by itself: the agent takes that as the acknowledgement
it waits for before powering off.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import math
import secrets
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hypr.checks import check_user

MAX_PAYLOAD = 65536
HEADER = struct.Struct(">BII")

Stream = Literal["stdout", "stderr"]


class FrameType(enum.IntEnum):
    HELLO = 0x01
    EXEC = 0x02
    STDIN = 0x03
    SIGNAL = 0x04
    SHUTDOWN = 0x05
    STATE = 0x81
    STDOUT = 0x82
    STDERR = 0x83
    EXIT = 0x84
    WORKLOAD_EXIT = 0x85


class ProtocolError(ValueError):
    """The peer sent something that is not a valid frame."""


class AgentDisconnected(ConnectionError):
    """The connection to the guest agent is gone (VM stopped, or the client was closed)."""


@dataclass(frozen=True)
class Frame:
    type: int
    session: int
    payload: bytes = b""


def encode_frame(type_: int, session: int, payload: bytes = b"") -> bytes:
    """Serialize one frame."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    if not 0 <= session <= 0xFFFFFFFF:
        raise ValueError(f"session id out of range: {session}")
    return HEADER.pack(type_, session, len(payload)) + payload


class FrameDecoder:
    """Incremental decoder: feed bytes as they arrive, get whole frames back."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        offset = 0
        while len(self._buf) - offset >= HEADER.size:
            type_, session, length = HEADER.unpack_from(self._buf, offset)
            if length > MAX_PAYLOAD:
                raise ProtocolError(f"frame length {length} exceeds {MAX_PAYLOAD}")
            end = offset + HEADER.size + length
            if len(self._buf) < end:
                break
            frames.append(Frame(type_, session, bytes(self._buf[offset + HEADER.size : end])))
            offset = end
        del self._buf[:offset]
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back."""
        return len(self._buf)


def encode_records(records: Iterable[tuple[str, str]]) -> bytes:
    """`key=value` records, each NUL-terminated."""
    out = bytearray()
    for key, value in records:
        if "\0" in key or "\0" in value or "=" in key:
            raise ValueError(f"invalid record {key!r}={value!r}")
        out += f"{key}={value}".encode() + b"\0"
    return bytes(out)


def decode_records(payload: bytes) -> list[tuple[str, str]]:
    """Inverse of `encode_records`; a missing final NUL is tolerated."""
    records = []
    for raw in payload.split(b"\0"):
        if raw:
            key, _, value = raw.decode(errors="replace").partition("=")
            records.append((key, value))
    return records


def exec_payload(
    argv: Sequence[str],
    env: Sequence[str] = (),
    workdir: str | None = None,
    stdin: bool = False,
    user: str | None = None,
) -> bytes:
    """The EXEC frame payload; without `user` the session runs as the workload's user."""
    if not argv:
        raise ValueError("argv must not be empty")
    records = [("arg", a) for a in argv] + [("env", e) for e in env]
    if workdir:
        records.append(("cwd", workdir))
    if stdin:
        records.append(("stdin", "1"))
    if user:
        records.append(("user", check_user(user)))
    return encode_records(records)


WorkloadStatus = Literal["unknown", "starting", "running", "exited"]


@dataclass(frozen=True)
class AgentState:
    """The agent's last STATE report."""

    ready: bool = False
    workload: WorkloadStatus = "unknown"
    pid: int | None = None
    exit_code: int | None = None
    restarts: int = 0

    @classmethod
    def from_payload(cls, payload: bytes) -> AgentState:
        fields = dict(decode_records(payload))
        status = fields.get("workload", "unknown")
        return cls(
            ready=fields.get("ready") == "1",
            workload=status if status in ("starting", "running", "exited") else "unknown",  # type: ignore[arg-type]
            pid=int(fields["pid"]) if "pid" in fields else None,
            exit_code=int(fields["exit_code"]) if "exit_code" in fields else None,
            restarts=int(fields.get("restarts", "0")),
        )


@dataclass(frozen=True)
class WorkloadExit:
    """One end of the workload: `restarting` False means the VM is powering off."""

    exit_code: int
    restarting: bool
    restarts: int

    @classmethod
    def from_payload(cls, payload: bytes) -> WorkloadExit:
        fields = dict(decode_records(payload))
        return cls(
            exit_code=int(fields.get("exit_code", "0")),
            restarting=fields.get("restarting") == "1",
            restarts=int(fields.get("restarts", "0")),
        )


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes


_EXITED = object()


class ExecSession:
    """One process started with EXEC; iterate it for output, `wait()` for the exit code."""

    def __init__(self, client: AgentClient, session_id: int, interactive: bool) -> None:
        self.id = session_id
        self.interactive = interactive
        self._client = client
        self._chunks: asyncio.Queue[tuple[Stream, bytes] | object] = asyncio.Queue()
        self._exit: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._stdin_closed = not interactive

    async def write_stdin(self, data: bytes) -> None:
        """Send `data` to the process's stdin (only for interactive sessions)."""
        if self._stdin_closed:
            raise ValueError("stdin is closed (or the session is not interactive)")
        for i in range(0, len(data), MAX_PAYLOAD):
            await self._client._send(FrameType.STDIN, self.id, data[i : i + MAX_PAYLOAD])

    async def close_stdin(self) -> None:
        """Signal EOF on the process's stdin."""
        if not self._stdin_closed:
            self._stdin_closed = True
            await self._client._send(FrameType.STDIN, self.id, b"")

    async def signal(self, signum: int) -> None:
        """Send `signum` to the process group of the session's process."""
        if not 0 < signum < 256:
            raise ValueError(f"bad signal number {signum}")
        await self._client._send(FrameType.SIGNAL, self.id, bytes([signum]))

    async def wait(self) -> int:
        """The exit code (128+N for death by signal N); output stays available to iterate."""
        return await asyncio.shield(self._exit)

    @property
    def exit_code(self) -> int | None:
        return self._exit.result() if self._exit.done() and not self._exit.exception() else None

    def __aiter__(self) -> AsyncIterator[tuple[Stream, bytes]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[tuple[Stream, bytes]]:
        while True:
            item = await self._chunks.get()
            if item is _EXITED:
                self._chunks.put_nowait(_EXITED)  # later iterations end at once too
                if self._exit.exception():
                    raise self._exit.exception()  # type: ignore[misc]
                return
            yield item  # type: ignore[misc]

    # Called by the client's reader.
    def _output(self, stream: Stream, data: bytes) -> None:
        self._chunks.put_nowait((stream, data))

    def _finish(self, code: int | None, error: BaseException | None = None) -> None:
        if self._exit.done():
            return
        if error is not None:
            self._exit.set_exception(error)
            self._exit.exception()  # mark retrieved: nobody may be waiting
        else:
            self._exit.set_result(code if code is not None else -1)
        self._chunks.put_nowait(_EXITED)


class AgentClient:
    """An open connection to one VM's guest agent."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_workload_exit: Callable[[WorkloadExit], None] | None = None,
    ) -> None:
        self.on_workload_exit = on_workload_exit
        self.state = AgentState()
        self._reader = reader
        self._writer = writer
        self._decoder = FrameDecoder()
        self._sessions: dict[int, ExecSession] = {}
        self._next_id = 1
        self._state_changed = asyncio.Event()
        self._nonce = secrets.token_hex(8)
        self._answered = False  # the agent answered our HELLO
        self._final: asyncio.Future[WorkloadExit] = asyncio.get_running_loop().create_future()
        self._closed: AgentDisconnected | None = None
        self._gone = asyncio.Event()
        self._task = asyncio.create_task(self._read_loop(), name="hypr-agent-reader")

    @classmethod
    async def connect(
        cls,
        socket_path: Path | str,
        timeout: float = 10.0,
        on_workload_exit: Callable[[WorkloadExit], None] | None = None,
    ) -> AgentClient:
        """Connect (retrying until the socket accepts or `timeout` passes) and send HELLO."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(str(socket_path))
                break
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"agent socket {socket_path} did not accept") from exc
                await asyncio.sleep(0.05)
        client = cls(reader, writer, on_workload_exit)
        await client._send(FrameType.HELLO, 0, client._nonce.encode())
        return client

    @property
    def connected(self) -> bool:
        return self._closed is None

    async def wait_ready(self, timeout: float | None = None) -> AgentState:
        """Wait until the agent answered HELLO with ready=1 (mounts and network done,
        workload started)."""
        async with asyncio.timeout(timeout):
            while not (self._answered and self.state.ready):
                self._check_open()
                self._state_changed.clear()
                await self._state_changed.wait()
        return self.state

    async def wait_final_exit(self, timeout: float | None = None) -> WorkloadExit:
        """Wait for the workload's final exit (the one after which the VM powers off)."""
        async with asyncio.timeout(timeout):
            return await asyncio.shield(self._final)

    async def open_exec(
        self,
        argv: Sequence[str],
        env: Sequence[str] = (),
        workdir: str | None = None,
        interactive: bool = False,
        user: str | None = None,
    ) -> ExecSession:
        """Start a process in the guest; stdin is /dev/null unless `interactive`."""
        await self._wait_handshake()
        payload = exec_payload(argv, env, workdir, interactive, user)
        session_id = self._next_id
        self._next_id = self._next_id % 0xFFFFFFFF + 1
        session = ExecSession(self, session_id, interactive)
        self._sessions[session_id] = session
        try:
            await self._send(FrameType.EXEC, session_id, payload)
        except BaseException:
            self._sessions.pop(session_id, None)
            raise
        return session

    async def exec(
        self,
        argv: Sequence[str],
        env: Sequence[str] = (),
        workdir: str | None = None,
        stdin: bytes = b"",
        timeout: float | None = None,
        user: str | None = None,
    ) -> ExecResult:
        """Run a process to completion and collect its output (SIGKILLed on timeout)."""
        out: dict[Stream, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        session: ExecSession | None = None

        async def run() -> int:
            nonlocal session
            session = await self.open_exec(argv, env, workdir, bool(stdin), user)
            if stdin:
                await session.write_stdin(stdin)
                await session.close_stdin()
            async for stream, data in session:
                out[stream] += data
            return await session.wait()

        try:
            async with asyncio.timeout(timeout):
                code = await run()
        except TimeoutError:
            if session is not None:
                with contextlib.suppress(ConnectionError):
                    await session.signal(9)
            raise
        return ExecResult(code, bytes(out["stdout"]), bytes(out["stderr"]))

    async def shutdown(self, timeout_s: float) -> WorkloadExit:
        """Ask the agent to stop the workload (SIGTERM, SIGKILL after `timeout_s`) and power
        off; returns the final workload exit."""
        await self._wait_handshake()
        if not self._final.done():
            seconds = max(0, math.ceil(timeout_s))
            await self._send(FrameType.SHUTDOWN, 0, str(seconds).encode())
        return await self.wait_final_exit(timeout_s + 10)

    async def wait_closed(self) -> None:
        """Return when the connection is gone (agent hung up, VM stopped, or `close()`)."""
        await self._gone.wait()

    async def close(self) -> None:
        """Hang up; pending sessions fail with AgentDisconnected."""
        self._teardown(AgentDisconnected("agent client closed"))
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    # ----------------------------------------------------------------------- internals

    def _check_open(self) -> None:
        if self._closed is not None:
            raise self._closed

    async def _wait_handshake(self) -> None:
        while not self._answered:
            self._check_open()
            self._state_changed.clear()
            await self._state_changed.wait()
        self._check_open()

    async def _send(self, type_: FrameType, session: int, payload: bytes = b"") -> None:
        self._check_open()
        self._writer.write(encode_frame(type_, session, payload))
        try:
            await self._writer.drain()
        except OSError as exc:
            self._teardown(AgentDisconnected(f"agent connection lost: {exc}"))
            raise self._closed from exc  # type: ignore[misc]

    async def _read_loop(self) -> None:
        reason = "agent closed the connection"
        try:
            while data := await self._reader.read(MAX_PAYLOAD + HEADER.size):
                for frame in self._decoder.feed(data):
                    self._dispatch(frame)
        except ProtocolError as exc:
            reason = f"protocol error from agent: {exc}"
        except OSError as exc:  # ConnectionError, or e.g. ENOTCONN after a teardown
            reason = f"agent connection lost: {exc}"
        self._teardown(AgentDisconnected(reason))

    def _dispatch(self, frame: Frame) -> None:
        if not self._answered:
            # Anything before the answer to our HELLO was queued for a previous client.
            if frame.type != FrameType.STATE:
                return
            if ("hello", self._nonce) not in decode_records(frame.payload):
                return
            self._answered = True
        if frame.type == FrameType.STATE:
            self.state = AgentState.from_payload(frame.payload)
            self._state_changed.set()
            if self.state.workload == "exited" and self.state.exit_code is not None:
                self._final_exit(WorkloadExit(self.state.exit_code, False, self.state.restarts))
        elif frame.type == FrameType.WORKLOAD_EXIT:
            event = WorkloadExit.from_payload(frame.payload)
            if self.on_workload_exit is not None:
                self.on_workload_exit(event)
            if not event.restarting:
                self._final_exit(event)
        elif frame.type in (FrameType.STDOUT, FrameType.STDERR):
            session = self._sessions.get(frame.session)
            if session is not None:
                stream: Stream = "stdout" if frame.type == FrameType.STDOUT else "stderr"
                session._output(stream, frame.payload)
        elif frame.type == FrameType.EXIT:
            session = self._sessions.pop(frame.session, None)
            if session is not None:
                session._finish(int(frame.payload or b"-1"))

    def _final_exit(self, event: WorkloadExit) -> None:
        if self._final.done():
            return
        self._final.set_result(event)
        # Hanging up is the acknowledgement the agent waits for before powering off.
        self._teardown(AgentDisconnected("the workload exited and the VM is powering off"))

    def _teardown(self, error: AgentDisconnected) -> None:
        if self._closed is not None:
            return
        self._closed = error
        self._gone.set()
        self._writer.close()
        for session in self._sessions.values():
            session._finish(None, error)
        self._sessions.clear()
        self._state_changed.set()
        if not self._final.done():
            self._final.set_exception(error)
            self._final.exception()
