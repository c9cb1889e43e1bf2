"""An instruction's arguments as the builder reads them when it runs it (with the ARGs and
ENVs in force there), and the checks BuildKit makes of them when it parses the file."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from hypr.build import syntax
from hypr.build.forms import HealthcheckSpec, arg_pairs, healthcheck_spec, name_values
from hypr.build.instruction import PIPES, Heredoc, Instruction, fail
from hypr.build.shell import Lexer, Lookup, ShellError
from hypr.build.syntax import SyntaxProblem

# --- helpers the builder calls while it runs the instructions ----------------------------


def key_values(inst: Instruction) -> list[tuple[str, str]]:
    """ENV and LABEL pairs, keys and values as written: the builder substitutes both."""
    try:
        return name_values(inst.keyword, inst.text, inst.escape)
    except SyntaxProblem as e:
        raise fail(inst, str(e)) from None


def arg_definitions(inst: Instruction) -> list[tuple[str, str | None]]:
    """ARG names and their defaults as written (None: no default)."""
    try:
        return arg_pairs(inst.text, inst.escape)
    except SyntaxProblem as e:
        raise fail(inst, str(e)) from None


def _copy_words(inst: Instruction) -> list[str]:
    """COPY/ADD arguments: the JSON array, or the text split on whitespace (not quotes)."""
    words = inst.args if inst.args is not None else syntax.WHITESPACE.split(inst.text)
    words = [w for w in words if w or inst.args is not None]
    if len(words) < 2:
        raise fail(inst, f"{inst.keyword} requires at least two arguments, but only one was "
                    "provided. Destination could not be determined")  # fmt: skip
    if inst.args is None and syntax.parse_heredoc(words[-1]) is not None:
        raise fail(inst, f"{inst.keyword} cannot accept a heredoc as a destination")
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
        raise fail(inst, str(e)) from None
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
        raise fail(inst, str(e)) from None


def healthcheck(inst: Instruction) -> HealthcheckSpec:
    """HEALTHCHECK as Docker stores it (`.config()` gives the image config object)."""
    try:
        return healthcheck_spec(inst.text, inst.args, inst.flag)
    except SyntaxProblem as e:
        raise fail(inst, str(e)) from None


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
        raise fail(inst, f"{inst.keyword} requires exactly one argument")


def _at_least_one(inst: Instruction) -> None:
    if not (inst.args if inst.args is not None else inst.text):
        raise fail(inst, f"{inst.keyword} requires at least one argument")


def _check_volume(inst: Instruction) -> None:
    _at_least_one(inst)
    if inst.args is not None and any(not syntax.strip_space(a) for a in inst.args):
        raise fail(inst, "VOLUME specified can not be an empty string")


def _check_shell(inst: Instruction) -> None:
    if inst.args is None and inst.text:
        raise fail(inst, "SHELL requires the arguments to be in JSON form")
    _at_least_one(inst)


def _check_onbuild(inst: Instruction) -> None:
    _at_least_one(inst)
    trigger = syntax.split_command(inst.text, inst.escape)[0].upper()
    if trigger == "ONBUILD":
        raise fail(inst, "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger in ("MAINTAINER", "FROM"):
        raise fail(inst, f"{trigger} isn't allowed as an ONBUILD trigger")


CHECKS: dict[str, Callable[[Instruction], object]] = {
    "ENV": key_values, "LABEL": key_values, "ARG": arg_definitions,
    "COPY": _copy_words, "ADD": _copy_words, "HEALTHCHECK": healthcheck,
    "WORKDIR": _exactly_one, "USER": _exactly_one, "STOPSIGNAL": _exactly_one,
    "MAINTAINER": _exactly_one, "EXPOSE": _at_least_one, "VOLUME": _check_volume,
    "SHELL": _check_shell, "ONBUILD": _check_onbuild,
}  # fmt: skip
