"""The kestrel control channel's wire format: frames, records and the payloads of the
frames the host decodes.

Frame, both directions: 1 byte type, u32 BE session id, u32 BE payload length (<= 65536),
payload. Records are NUL-terminated `key=value` strings. See docs/guest-agent.md.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
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
    RESIZE = 0x06
    CLOCK = 0x07
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
    tty: bool = False,
    size: TtySize | None = None,
    agent_root: bool = False,
) -> bytes:
    """The EXEC frame payload; without `user` the session runs as the workload's user.
    With `tty` the process gets a pty (of `size`, if given) for stdin, stdout and stderr.
    With `agent_root` (build VMs only) it runs in the agent's initramfs, not the image."""
    if not argv:
        raise ValueError("argv must not be empty")
    records = [("arg", a) for a in argv] + [("env", e) for e in env]
    if workdir:
        records.append(("cwd", workdir))
    if stdin:
        records.append(("stdin", "1"))
    if user:
        records.append(("user", check_user(user)))
    if tty:
        records.append(("tty", "1"))
        if size is not None:
            records += size.records()
    if agent_root:
        records.append(("root", "agent"))
    return encode_records(records)


@dataclass(frozen=True)
class TtySize:
    """A pty's window size, as Docker's `h` and `w` give it."""

    rows: int
    cols: int

    def __post_init__(self) -> None:
        if not (0 < self.rows <= 0xFFFF and 0 < self.cols <= 0xFFFF):
            raise ValueError(f"bad terminal size {self.rows}x{self.cols}")

    def records(self) -> list[tuple[str, str]]:
        return [("rows", str(self.rows)), ("cols", str(self.cols))]


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
