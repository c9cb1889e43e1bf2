"""The Dockerfile language, as Docker's reference defines it, parsed into instructions.

Parsing only splits the file (directives, comments, continuations, heredocs, flags, the
JSON or shell form); variables are substituted later, by the builder, with the ARGs and
ENVs in force at each instruction (`hypr.build.shell`). Errors name the file, the line and
the instruction.
"""

from __future__ import annotations

import platform
import re
from collections.abc import Mapping

from hypr.build import syntax
from hypr.build.arguments import CHECKS, arg_definitions
from hypr.build.instruction import (
    Dockerfile,
    DockerfileError,
    Heredoc,
    Instruction,
    Stage,
    fail,
)
from hypr.build.shell import Lexer, ShellError
from hypr.build.syntax import SyntaxProblem

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
    check = CHECKS.get(keyword)
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
            raise fail(inst, "no build stage in current context")

    def _expand(self, inst: Instruction, word: str, escape: str) -> str:
        try:
            return Lexer(escape).process(word, self.scope.get)[0]
        except ShellError as e:
            raise fail(inst, str(e)) from None

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
                raise fail(inst, f'invalid name for build stage: "{words[2]}", name can\'t '
                            "start with a number or contain symbols")  # fmt: skip
        elif len(words) != 1:
            raise fail(inst, "FROM requires either one or three arguments")
        if name is not None and any(stage.name == name for stage in self.stages):
            raise fail(inst, f'duplicate stage name "{name}"')
        base = self._expand(inst, words[0], escape)
        if not base:
            raise fail(inst, f"base name ({words[0]}) should not be blank")
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
