"""A parsed Dockerfile's types: what hypr.build.dockerfile makes of the text and the builder
runs. Nothing here is substituted yet."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypr.errors import InvalidArgument

# Instructions that take variable substitution (Docker's list); RUN, CMD and ENTRYPOINT
# leave it to the shell.
EXPANDS = frozenset(
    {"ADD", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
     "ARG", "ONBUILD", "HEALTHCHECK"}
)  # fmt: skip


class DockerfileError(InvalidArgument):
    """A Dockerfile that cannot be built: `Dockerfile:12: RUN: <what is wrong>`."""

    def __init__(self, file: str, line: int, instruction: str, message: str) -> None:
        where = f"{file}:{line}" if line else file
        super().__init__(
            f"{where}: {instruction}: {message}" if instruction else f"{where}: {message}"
        )
        self.file = file
        self.line = line
        self.instruction = instruction


@dataclass(frozen=True)
class Heredoc:
    """`<<EOF` ... `EOF`: a file body for COPY/ADD, a script for RUN."""

    name: str  # the delimiter word (EOF)
    content: str  # the body, lines joined with "\n" and ending with one ("<<-" strips tabs)
    expand: bool  # the delimiter was unquoted: variables in the body are substituted
    chomp: bool = False  # written `<<-`: the tabs are already stripped from `content`


@dataclass(frozen=True)
class Instruction:
    """One instruction as written; nothing substituted yet."""

    keyword: str  # upper case: RUN, COPY, ...
    line: int  # 1-based line of its first line
    source: str  # as written, continuation lines joined (shown in progress and history)
    flags: dict[str, list[str]] = field(default_factory=dict)  # --from=x -> {"from": ["x"]}
    args: list[str] | None = None  # the JSON (exec) form, when the instruction used it
    text: str = ""  # the rest after the flags (shell form), "" for the JSON form
    heredocs: list[Heredoc] = field(default_factory=list)
    file: str = "Dockerfile"  # the Dockerfile it came from, for the helpers' errors
    escape: str = "\\"  # the file's escape token, which splitting its words needs

    def flag(self, name: str) -> str | None:
        """The last value of a flag given once or more, None if absent."""
        values = self.flags.get(name)
        return values[-1] if values else None


@dataclass(frozen=True)
class Stage:
    """`FROM [--platform=P] IMAGE [AS NAME]` and the instructions up to the next FROM."""

    index: int
    base: str  # the image, unsubstituted (substituted with the global ARGs only)
    name: str | None  # lower-cased, as Docker compares stage names
    platform: str | None
    line: int
    source: str
    instructions: list[Instruction] = field(default_factory=list)


@dataclass(frozen=True)
class Dockerfile:
    """A parsed Dockerfile: what `parse` returns and the builder runs."""

    file: str  # its name as the user gave it (for errors)
    global_args: list[Instruction]  # the ARGs before the first FROM
    stages: list[Stage]
    escape: str = "\\"
    syntax: str | None = None  # the `# syntax=` directive, recorded and otherwise ignored


PIPES = "/dev/pipes/"  # where BuildKit puts a RUN heredoc script that starts with #!


def fail(inst: Instruction, message: str) -> DockerfileError:
    return DockerfileError(inst.file, inst.line, inst.keyword, message)
