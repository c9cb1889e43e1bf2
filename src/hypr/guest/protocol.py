"""Host side of the kestrel control channel (virtio-serial port "hypr.agent").

The frames and their payloads are in `hypr.guest.wire`; see docs/guest-agent.md.

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
import math
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

from hypr.guest.wire import (
    HEADER,
    MAX_PAYLOAD,
    AgentDisconnected,
    AgentState,
    ExecResult,
    Frame,
    FrameDecoder,
    FrameType,
    ProtocolError,
    Stream,
    TtySize,
    WorkloadExit,
    decode_records,
    encode_frame,
    encode_records,
    exec_payload,
)

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

    async def resize(self, size: TtySize) -> None:
        """Set the window size of the session's pty (agents ignore it for sessions without)."""
        await self._client._send(FrameType.RESIZE, self.id, encode_records(size.records()))

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
        on_workload_exit: Callable[[WorkloadExit], None] | None = None,
    ) -> AgentClient:
        """Connect (retrying until the socket accepts) and send HELLO. Retries forever: bound
        it with `asyncio.timeout()` at the call site."""
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(str(socket_path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                await asyncio.sleep(0.05)
        client = cls(reader, writer, on_workload_exit)
        await client._send(FrameType.HELLO, 0, client._nonce.encode())
        return client

    @property
    def connected(self) -> bool:
        return self._closed is None

    async def wait_ready(self) -> AgentState:
        """Wait until the agent answered HELLO with ready=1 (mounts and network done,
        workload started)."""
        return await self.wait_state(lambda state: state.ready)

    async def wait_state(self, check: Callable[[AgentState], bool]) -> AgentState:
        """Wait until the agent's state (as of its answer to our HELLO or later) passes
        `check`; woken by each STATE frame instead of polling."""
        while not (self._answered and check(self.state)):
            self._check_open()
            self._state_changed.clear()
            await self._state_changed.wait()
        return self.state

    async def wait_final_exit(self) -> WorkloadExit:
        """Wait for the workload's final exit (the one after which the VM powers off);
        shielded, so a caller's `asyncio.timeout()` does not cancel the shared future."""
        return await asyncio.shield(self._final)

    async def open_exec(
        self,
        argv: Sequence[str],
        env: Sequence[str] = (),
        workdir: str | None = None,
        interactive: bool = False,
        user: str | None = None,
        tty: bool = False,
        size: TtySize | None = None,
        agent_root: bool = False,
    ) -> ExecSession:
        """Start a process in the guest; stdin is /dev/null unless `interactive`. With `tty`
        it runs on a pty: its output all arrives as stdout, with a terminal's line ends."""
        await self._wait_handshake()
        payload = exec_payload(argv, env, workdir, interactive, user, tty, size, agent_root)
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
        user: str | None = None,
        agent_root: bool = False,
    ) -> ExecResult:
        """Run a process to completion and collect its output. If the caller cancels (e.g.
        its `asyncio.timeout()` expires) the guest process is SIGKILLed, not left running."""
        out: dict[Stream, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        session: ExecSession | None = None
        try:
            session = await self.open_exec(
                argv, env, workdir, bool(stdin), user, agent_root=agent_root
            )
            if stdin:
                await session.write_stdin(stdin)
                await session.close_stdin()
            async for stream, data in session:
                out[stream] += data
            code = await session.wait()
        except asyncio.CancelledError:
            if session is not None:
                with contextlib.suppress(ConnectionError):
                    await session.signal(9)
            raise
        return ExecResult(code, bytes(out["stdout"]), bytes(out["stderr"]))

    async def signal_workload(self, signum: int) -> None:
        """Send `signum` to the workload's process group (session 0); its exit, if the
        signal ends it, follows as for any other (restart policy included)."""
        if not 0 < signum < 256:
            raise ValueError(f"bad signal number {signum}")
        await self._wait_handshake()
        await self._send(FrameType.SIGNAL, 0, bytes([signum]))

    async def set_clock(self) -> None:
        """Give the guest the host's wall clock: a VM restored from a snapshot wakes with
        the time it was saved at."""
        await self._wait_handshake()
        now = time.time_ns()
        await self._send(FrameType.CLOCK, 0, f"{now // 10**9}.{now % 10**9:09d}".encode())

    async def shutdown(self, grace: float) -> WorkloadExit:
        """Ask the agent to stop the workload (SIGTERM, SIGKILL after `grace` seconds) and
        power off; returns the final workload exit (given 10 s beyond `grace` to arrive)."""
        await self._wait_handshake()
        if not self._final.done():
            seconds = max(0, math.ceil(grace))
            await self._send(FrameType.SHUTDOWN, 0, str(seconds).encode())
        async with asyncio.timeout(grace + 10):
            return await self.wait_final_exit()

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
            if not self._answers_our_hello(frame):
                return
            self._answered = True
        if frame.type == FrameType.STATE:
            self._on_state(frame.payload)
        elif frame.type == FrameType.WORKLOAD_EXIT:
            self._on_workload_exit(WorkloadExit.from_payload(frame.payload))
        elif frame.type in (FrameType.STDOUT, FrameType.STDERR):
            self._on_output(frame)
        elif frame.type == FrameType.EXIT:
            session = self._sessions.pop(frame.session, None)
            if session is not None:
                session._finish(int(frame.payload or b"-1"))

    def _answers_our_hello(self, frame: Frame) -> bool:
        """Anything before the answer to our HELLO was queued for a previous client."""
        return frame.type == FrameType.STATE and ("hello", self._nonce) in decode_records(
            frame.payload
        )

    def _on_state(self, payload: bytes) -> None:
        self.state = AgentState.from_payload(payload)
        self._state_changed.set()
        if self.state.workload == "exited" and self.state.exit_code is not None:
            self._final_exit(WorkloadExit(self.state.exit_code, False, self.state.restarts))

    def _on_workload_exit(self, event: WorkloadExit) -> None:
        if self.on_workload_exit is not None:
            self.on_workload_exit(event)
        if not event.restarting:
            self._final_exit(event)

    def _on_output(self, frame: Frame) -> None:
        session = self._sessions.get(frame.session)
        if session is not None:
            stream: Stream = "stdout" if frame.type == FrameType.STDOUT else "stderr"
            session._output(stream, frame.payload)

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
