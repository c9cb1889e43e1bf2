"""Exec instances as Docker has them: created with their command (an id to start later),
started once as an agent session, and inspected after their stream ended for the exit
code (the `docker` CLI and the SDK read it there). They live in memory only: a daemon
restart ends the agent sessions anyway. Ended ones are forgotten after EXEC_RETENTION
seconds, as Docker drops them with their container.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hypr.errors import Conflict, NotFound
from hypr.guest.protocol import AgentClient, ExecSession
from hypr.guest.wire import AgentDisconnected, TtySize

EXEC_RETENTION = 300.0  # an ended exec stays inspectable this long
UNSTARTED_RETENTION = 3600.0  # one that was never started
KILLED_EXIT_CODE = 137  # the VM went away under the process: it was killed with it


@dataclass(frozen=True)
class ExecConfig:
    """What Docker's exec create says: the command and which streams the client takes."""

    argv: tuple[str, ...]
    env: tuple[str, ...] = ()
    workdir: str | None = None
    user: str | None = None
    tty: bool = False
    stdin: bool = False
    stdout: bool = True
    stderr: bool = True


@dataclass(eq=False)
class ExecInstance:
    id: str
    vm_id: str
    config: ExecConfig
    created: float
    size: TtySize | None = None  # of the pty, until it is started
    session: ExecSession | None = None
    running: bool = False
    exit_code: int | None = None
    ended: float | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)  # exit_code is set


class ExecRegistry:
    """The daemon's exec instances, by id."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._execs: dict[str, ExecInstance] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def create(self, vm_id: str, config: ExecConfig, size: TtySize | None) -> ExecInstance:
        self._forget_old()
        instance = ExecInstance(secrets.token_hex(32), vm_id, config, self._clock(), size)
        self._execs[instance.id] = instance
        return instance

    def get(self, exec_id: str) -> ExecInstance:
        self._forget_old()
        instance = self._execs.get(exec_id)
        if instance is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        return instance

    async def start(self, exec_id: str, agent: AgentClient, detach: bool) -> ExecInstance:
        """Open the agent session. An attached caller pumps its output; a detached one's
        output is read and dropped here, so the session's queue cannot grow."""
        instance = self.get(exec_id)
        if instance.exit_code is not None:
            raise Conflict(f"exec {exec_id} has already run")
        if instance.running:
            raise Conflict(f"exec {exec_id} is already running")
        config = instance.config
        instance.running = True  # claimed before the await: a second start is refused
        try:
            instance.session = await agent.open_exec(
                config.argv, config.env, config.workdir, config.stdin, config.user,
                tty=config.tty, size=instance.size if config.tty else None,
            )  # fmt: skip
        except AgentDisconnected as exc:
            instance.running = False
            raise Conflict(f"the container stopped: {exc}") from exc
        except BaseException:
            instance.running = False
            raise
        task = asyncio.create_task(self._watch(instance, drain=detach))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return instance

    async def resize(self, exec_id: str, size: TtySize) -> None:
        """Docker's clients resize right after start, sometimes before: keep it for then."""
        instance = self.get(exec_id)
        if not instance.config.tty:
            return
        instance.size = size
        if instance.session is not None and instance.running:
            with contextlib.suppress(AgentDisconnected):
                await instance.session.resize(size)

    async def _watch(self, instance: ExecInstance, drain: bool) -> None:
        session = instance.session
        assert session is not None
        try:
            if drain:
                async for _ in session:
                    pass
            code = await session.wait()
        except AgentDisconnected:
            code = KILLED_EXIT_CODE
        instance.exit_code = code
        instance.running = False
        instance.ended = self._clock()
        instance.done.set()

    def _forget_old(self) -> None:
        now = self._clock()
        for exec_id, instance in list(self._execs.items()):
            if instance.ended is not None:
                expired = now - instance.ended > EXEC_RETENTION
            else:
                expired = instance.session is None and now - instance.created > UNSTARTED_RETENTION
            if expired:
                del self._execs[exec_id]
