"""The Dockerfile language, as Docker's reference defines it, parsed into instructions.

Parsing only splits the file (directives, comments, continuations, heredocs, flags, the
JSON or shell form); variables are substituted later, by the builder, with the ARGs and
ENVs in force at each instruction (`hypr.build.shell`). Errors name the file, the line and
the instruction.
"""

from __future__ import annotations

import platform
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from hypr.build import syntax
from hypr.build.forms import HealthcheckSpec, arg_pairs, healthcheck_spec, name_values
from hypr.build.shell import Lexer, Lookup, ShellError
from hypr.build.syntax import SyntaxProblem
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


KEYWORDS = frozenset(
    {"ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
     "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}
)  # fmt: skip
_JSON_FORMS = frozenset({"RUN", "CMD", "ENTRYPOINT", "SHELL", "COPY", "ADD", "VOLUME"})
_HEREDOC_FORMS = frozenset({"RUN", "COPY", "ADD"})
_S, _MANY, _BOOL = "string", "strings", "bool"  # BuildKit's flag types
# The flags each instruction takes (BuildKit's instructions/parse.go); no others exist.
FLAGS: dict[str, dict[str, str]] = {
    "FROM": {"platform": _S},
    "COPY": {"from": _S, "chown": _S, "chmod": _S, "link": _BOOL, "exclude": _MANY,
             "parents": _BOOL},
    "ADD": {"chown": _S, "chmod": _S, "link": _BOOL, "keep-git-dir": _BOOL, "checksum": _S,
            "unpack": _BOOL, "exclude": _MANY},
    "RUN": {"mount": _MANY, "network": _S, "security": _S},
    "HEALTHCHECK": {"interval": _S, "timeout": _S, "start-period": _S, "start-interval": _S,
                    "retries": _S},
}  # fmt: skip
_STAGE_NAME = re.compile(r"[a-z][a-z0-9-_.]*")
PIPES = "/dev/pipes/"  # where BuildKit puts a RUN heredoc script that starts with #!
__all__ = ["HealthcheckSpec"]  # re-exported: the builder imports everything from here


def parse(
    text: str,
    file: str = "Dockerfile",
    build_args: Mapping[str, str] = {},
    predefined: Mapping[str, str] | None = None,
) -> Dockerfile:
    """Parse a Dockerfile as BuildKit does; FROM images are substituted with the global ARGs.

    `build_args` (--build-arg) override the global ARG defaults; `predefined` are the
    automatic platform ARGs (`platform_args()` when None). Raises DockerfileError.
    """
    reader = syntax.LineReader(text)
    stages = _Stages(file, build_args, platform_args() if predefined is None else predefined)
    try:
        for start, line in reader.logical_lines():
            stages.add(_instruction(reader, file, start, line), reader.escape)
    except SyntaxProblem as e:  # a directive: the reader knows the line
        raise DockerfileError(file, e.line or reader.line, "", str(e)) from None
    return stages.finish(reader.escape, reader.syntax)


def platform_args() -> dict[str, str]:
    """BuildKit's automatic platform ARGs for this machine (builds are native)."""
    machine = platform.machine()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(
        machine, machine
    )
    variant = "v7" if arch == "arm" else ""
    plat = f"linux/{arch}/{variant}" if variant else f"linux/{arch}"
    args: dict[str, str] = {}
    for prefix in ("BUILD", "TARGET"):
        args |= {f"{prefix}PLATFORM": plat, f"{prefix}OS": "linux", f"{prefix}OSVERSION": "",
                 f"{prefix}ARCH": arch, f"{prefix}VARIANT": variant}  # fmt: skip
    return args


def _instruction(reader: syntax.LineReader, file: str, start: int, line: str) -> Instruction:
    """One logical line as an Instruction, its heredoc bodies read, its arguments checked."""
    word, flag_words, rest = syntax.split_command(line, reader.escape)
    keyword = word.upper()
    if keyword not in KEYWORDS:
        error = DockerfileError(file, start, "", f"unknown instruction: {word}")
        error.instruction = keyword
        raise error
    try:
        flags = _flags(keyword, flag_words)
        args = _json_args(keyword, rest)
        heredocs = _heredocs(reader, keyword, rest, line) if args is None else []
    except SyntaxProblem as e:
        raise DockerfileError(file, start, keyword, str(e)) from None
    text = rest if args is None or keyword == "HEALTHCHECK" else ""
    inst = Instruction(keyword, start, line, flags, args, text, heredocs, file, reader.escape)
    check = _CHECKS.get(keyword)
    if check is not None:
        check(inst)
    return inst


def _flags(keyword: str, words: list[str]) -> dict[str, list[str]]:
    """BFlags.Parse: each flag known to the instruction, single ones given once."""
    known = FLAGS.get(keyword, {})
    flags: dict[str, list[str]] = {}
    for word in words:
        if word == "--":
            break
        if not word.startswith("--"):
            raise SyntaxProblem(f"arg should start with -- : {word}")
        flag, has_value, value = word.partition("=")
        name = flag[2:]
        kind = known.get(name)
        if kind is None:
            raise SyntaxProblem(f"unknown flag: {flag}")
        if name in flags and kind != _MANY:
            raise SyntaxProblem(f"duplicate flag specified: {flag}")
        if (has_value and not value) if kind == _BOOL else not has_value:
            raise SyntaxProblem(f"missing a value on flag: {flag}")
        if kind == _BOOL:
            value = value.lower() or "true"
            if value not in ("true", "false"):
                raise SyntaxProblem(f"expecting boolean value for flag {flag}, not: {value}")
        flags.setdefault(name, []).append(value)
    return flags


def _json_args(keyword: str, rest: str) -> list[str] | None:
    """The exec (JSON) form, if the instruction takes one and `rest` is a JSON array."""
    if keyword == "HEALTHCHECK":
        return syntax.parse_json(_first_word(rest)[1])
    return syntax.parse_json(rest) if keyword in _JSON_FORMS else None


def _first_word(text: str) -> tuple[str, str]:
    """The first word and what follows the spaces after it."""
    parts = syntax.WHITESPACE.split(text, maxsplit=1)
    return parts[0], parts[1] if len(parts) > 1 else ""


def _heredocs(reader: syntax.LineReader, keyword: str, rest: str, line: str) -> list[Heredoc]:
    """The bodies of the line's `<<WORD`s, for RUN, COPY and ADD in the shell form."""
    inner = keyword
    if keyword == "ONBUILD":
        word, _, inner_rest = syntax.split_command(rest, reader.escape)
        inner = word.upper()
        if inner in _JSON_FORMS and syntax.parse_json(inner_rest) is not None:
            return []
    if inner not in _HEREDOC_FORMS or "<<" not in line:
        return []
    docs = []
    for doc in syntax.heredocs_in(line):
        body = reader.heredoc_body(doc.name, doc.chomp)
        body = syntax.chomp_heredoc(body) if doc.chomp else body
        docs.append(Heredoc(doc.name, body, doc.expand, doc.chomp))
    return docs


def _fail(inst: Instruction, message: str) -> DockerfileError:
    return DockerfileError(inst.file, inst.line, inst.keyword, message)


class _Stages:
    """Instructions into stages; the global ARGs in scope for FROM."""

    def __init__(self, file: str, build_args: Mapping[str, str], predefined: Mapping[str, str]):
        self.file = file
        self.build_args = build_args
        self.scope = {k: build_args.get(k, v) for k, v in predefined.items()}
        self.global_args: list[Instruction] = []
        self.stages: list[Stage] = []

    def add(self, inst: Instruction, escape: str) -> None:
        if inst.keyword == "FROM":
            self.stages.append(self._stage(inst, escape))
        elif self.stages:
            self.stages[-1].instructions.append(inst)
        elif inst.keyword == "ARG":
            self.global_args.append(inst)
            self._declare(inst, escape)
        else:
            raise _fail(inst, "no build stage in current context")

    def _expand(self, inst: Instruction, word: str, escape: str) -> str:
        try:
            return Lexer(escape).process(word, self.scope.get)[0]
        except ShellError as e:
            raise _fail(inst, str(e)) from None

    def _declare(self, inst: Instruction, escape: str) -> None:
        """A global ARG: its default (substituted) unless a build arg overrides it."""
        for name, default in arg_definitions(inst):
            if name in self.build_args:
                self.scope[name] = self.build_args[name]
            elif default is not None:
                self.scope[name] = self._expand(inst, default, escape)

    def _stage(self, inst: Instruction, escape: str) -> Stage:
        words = syntax.WHITESPACE.split(inst.text) if inst.text else []
        name = None
        if len(words) == 3 and words[1].lower() == "as":
            name = words[2].lower()
            if not _STAGE_NAME.fullmatch(name):
                raise _fail(inst, f'invalid name for build stage: "{words[2]}", name can\'t '
                            "start with a number or contain symbols")  # fmt: skip
        elif len(words) != 1:
            raise _fail(inst, "FROM requires either one or three arguments")
        if name is not None and any(stage.name == name for stage in self.stages):
            raise _fail(inst, f'duplicate stage name "{name}"')
        base = self._expand(inst, words[0], escape)
        if not base:
            raise _fail(inst, f"base name ({words[0]}) should not be blank")
        platform_ = inst.flag("platform")
        platform_ = self._expand(inst, platform_, escape) if platform_ else None
        index = len(self.stages)
        return Stage(index, base, name, platform_ or None, inst.line, inst.source)

    def finish(self, escape: str, syntax_: str | None) -> Dockerfile:
        if not self.stages:
            message = "dockerfile contains no stages to build" if self.global_args else (
                "file with no instructions")  # fmt: skip
            raise DockerfileError(self.file, 0, "", message)
        return Dockerfile(self.file, self.global_args, self.stages, escape, syntax_)


# --- helpers the builder calls while it runs the instructions ----------------------------


def key_values(inst: Instruction) -> list[tuple[str, str]]:
    """ENV and LABEL pairs, keys and values as written: the builder substitutes both."""
    try:
        return name_values(inst.keyword, inst.text, inst.escape)
    except SyntaxProblem as e:
        raise _fail(inst, str(e)) from None


def arg_definitions(inst: Instruction) -> list[tuple[str, str | None]]:
    """ARG names and their defaults as written (None: no default)."""
    try:
        return arg_pairs(inst.text, inst.escape)
    except SyntaxProblem as e:
        raise _fail(inst, str(e)) from None


def _copy_words(inst: Instruction) -> list[str]:
    """COPY/ADD arguments: the JSON array, or the text split on whitespace (not quotes)."""
    words = inst.args if inst.args is not None else syntax.WHITESPACE.split(inst.text)
    words = [w for w in words if w or inst.args is not None]
    if len(words) < 2:
        raise _fail(inst, f"{inst.keyword} requires at least two arguments, but only one was "
                    "provided. Destination could not be determined")  # fmt: skip
    if inst.args is None and syntax.parse_heredoc(words[-1]) is not None:
        raise _fail(inst, f"{inst.keyword} cannot accept a heredoc as a destination")
    return words


def copy_sources(inst: Instruction, lookup: Lookup) -> tuple[list[str], str]:
    """COPY/ADD: the source paths and the destination, each word substituted.

    Heredoc sources (`COPY <<EOF /dst`) are left out: they are `inst.heredocs`, whose
    bodies `heredoc_content` gives. Like Docker, the shell form splits on whitespace only
    (quotes do not group words: paths with spaces need the JSON form).
    """
    words = _copy_words(inst)
    lexer = Lexer(inst.escape)
    try:
        dest = lexer.process(words[-1], lookup)[0]
        sources = [lexer.process(word, lookup)[0] for word in words[:-1]
                   if inst.args is not None or syntax.parse_heredoc(word) is None]  # fmt: skip
    except ShellError as e:
        raise _fail(inst, str(e)) from None
    return sources, dest


def heredoc_content(inst: Instruction, doc: Heredoc, lookup: Lookup) -> str:
    """A COPY/ADD heredoc's file body: substituted when its word was unquoted.

    BuildKit substitutes with quotes left alone but escapes (`\\x`) still applied.
    """
    if not doc.expand:
        return doc.content
    try:
        return Lexer("\\", skip_quotes=True).process(doc.content, lookup)[0]
    except ShellError as e:
        raise _fail(inst, str(e)) from None


def healthcheck(inst: Instruction) -> HealthcheckSpec:
    """HEALTHCHECK as Docker stores it (`.config()` gives the image config object)."""
    try:
        return healthcheck_spec(inst.text, inst.args, inst.flag)
    except SyntaxProblem as e:
        raise _fail(inst, str(e)) from None


class Command(NamedTuple):
    """What RUN/CMD/ENTRYPOINT execute."""

    argv: list[str]
    # Files the argv runs, to create (mode 0755) before running: only for `RUN <<EOF` whose
    # body starts with #!, which BuildKit runs as the file /dev/pipes/EOF.
    files: dict[str, bytes]


def command_form(inst: Instruction, shell: list[str]) -> Command:
    """RUN, CMD, ENTRYPOINT as an argv: the exec form as is, else `shell + [text]`.

    RUN heredocs follow BuildKit: `RUN <<EOF` runs the body with the shell (or as a file
    when it starts with #!); `RUN cmd <<EOF ...` gives the shell the text with the bodies
    and terminators after it, so the shell itself feeds them to `cmd`.
    """
    if inst.args is not None:
        return Command(list(inst.args), {})
    if not inst.heredocs:
        return Command([*shell, inst.text], {})
    if syntax.parse_heredoc(inst.text) is not None:
        doc = inst.heredocs[0]
        if doc.content.startswith("#!"):
            path = PIPES + doc.name
            return Command([*shell, path], {path: doc.content.encode()})
        return Command([*shell, doc.content], {})
    script = inst.text + "".join(f"\n{doc.content}{doc.name}" for doc in inst.heredocs)
    return Command([*shell, script], {})


# --- the checks BuildKit makes when it parses each instruction --------------------------


def _exactly_one(inst: Instruction) -> None:
    if not inst.text:
        raise _fail(inst, f"{inst.keyword} requires exactly one argument")


def _at_least_one(inst: Instruction) -> None:
    if not (inst.args if inst.args is not None else inst.text):
        raise _fail(inst, f"{inst.keyword} requires at least one argument")


def _check_volume(inst: Instruction) -> None:
    _at_least_one(inst)
    if inst.args is not None and any(not syntax.strip_space(a) for a in inst.args):
        raise _fail(inst, "VOLUME specified can not be an empty string")


def _check_shell(inst: Instruction) -> None:
    if inst.args is None and inst.text:
        raise _fail(inst, "SHELL requires the arguments to be in JSON form")
    _at_least_one(inst)


def _check_onbuild(inst: Instruction) -> None:
    _at_least_one(inst)
    trigger = syntax.split_command(inst.text, inst.escape)[0].upper()
    if trigger == "ONBUILD":
        raise _fail(inst, "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger in ("MAINTAINER", "FROM"):
        raise _fail(inst, f"{trigger} isn't allowed as an ONBUILD trigger")


_CHECKS: dict[str, Callable[[Instruction], object]] = {
    "ENV": key_values, "LABEL": key_values, "ARG": arg_definitions,
    "COPY": _copy_words, "ADD": _copy_words, "HEALTHCHECK": healthcheck,
    "WORKDIR": _exactly_one, "USER": _exactly_one, "STOPSIGNAL": _exactly_one,
    "MAINTAINER": _exactly_one, "EXPOSE": _at_least_one, "VOLUME": _check_volume,
    "SHELL": _check_shell, "ONBUILD": _check_onbuild,
}  # fmt: skip
