"""The argument grammars of particular instructions: ENV/LABEL pairs, ARG definitions,
HEALTHCHECK with its Go durations, and RUN's command line with heredocs.

Pure functions on an instruction's text, apart from `hypr.build.dockerfile` so that it stays
short; they raise `SyntaxProblem` with BuildKit's messages and the dockerfile module's
wrappers add the file, line and instruction.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hypr import units
from hypr.build import syntax
from hypr.build.shell import go_quote
from hypr.build.syntax import SyntaxProblem

_MILLISECOND = 1_000_000
_INT = re.compile(r"[+-]?[0-9]+")


def name_values(keyword: str, text: str, escape: str) -> list[tuple[str, str]]:
    """parseNameVal + parseKvps: `K=V K2="v 2"`, or the legacy `K V with spaces`."""
    words = syntax.parse_words(text, escape)
    if not words:
        raise SyntaxProblem(f"{keyword} requires at least one argument")
    if "=" not in words[0]:
        parts = syntax.WHITESPACE.split(text, maxsplit=1)
        if len(parts) < 2:
            raise SyntaxProblem(f"{keyword} must have two arguments")
        pairs = [(parts[0], parts[1])]
    else:
        pairs = []
        for word in words:
            if "=" not in word:
                raise SyntaxProblem(f"Syntax error - can't find = in {go_quote(word)}. "
                                    "Must be of the form: name=value")  # fmt: skip
            key, _, value = word.partition("=")
            pairs.append((key, value))
    if any(not key for key, _ in pairs):
        raise SyntaxProblem(f"{keyword} names can not be blank")
    return pairs


def arg_pairs(text: str, escape: str) -> list[tuple[str, str | None]]:
    """parseArg: `A`, `A=1 B="two words"`; the values unsubstituted, None when absent."""
    words = syntax.parse_words(text, escape)
    if not words:
        raise SyntaxProblem("ARG requires at least one argument")
    pairs: list[tuple[str, str | None]] = []
    for word in words:
        key, eq, value = word.partition("=")
        if eq and not key:
            raise SyntaxProblem("ARG names can not be blank")
        pairs.append((key, value if eq else None))
    return pairs


@dataclass(frozen=True)
class HealthcheckSpec:
    """HEALTHCHECK as Docker stores it in the image config; durations in nanoseconds."""

    test: list[str]  # ["CMD", arg...], ["CMD-SHELL", "command"] or ["NONE"]
    interval: int = 0  # 0: unset (the runtime's default applies)
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0

    def config(self) -> dict[str, Any]:
        """The image config's `Healthcheck` object (zero values omitted, as Docker does)."""
        out: dict[str, Any] = {"Test": list(self.test)}
        durations = {"Interval": self.interval, "Timeout": self.timeout,
                     "StartPeriod": self.start_period, "StartInterval": self.start_interval,
                     "Retries": self.retries}  # fmt: skip
        out.update((key, value) for key, value in durations.items() if value)
        return out


def healthcheck_spec(
    text: str, args: Sequence[str] | None, flag: Callable[[str], str | None]
) -> HealthcheckSpec:
    """parseHealthcheck: `NONE`, or `CMD` in the exec (`args`) or shell form, with flags."""
    kind, command = [*syntax.WHITESPACE.split(text, maxsplit=1), ""][:2]
    if not kind:
        raise SyntaxProblem("HEALTHCHECK requires at least one argument")
    cmd_args = list(args) if args is not None else ([command] if command else [])
    if kind.upper() == "NONE":
        if cmd_args:
            raise SyntaxProblem("HEALTHCHECK NONE takes no arguments")
        return HealthcheckSpec(["NONE"])
    if kind.upper() != "CMD":
        raise SyntaxProblem(f"Unknown type {go_quote(kind.upper())} in HEALTHCHECK (try CMD)")
    if not cmd_args:
        raise SyntaxProblem("Missing command after HEALTHCHECK CMD")
    test = ["CMD", *cmd_args] if args is not None else ["CMD-SHELL", command]
    return HealthcheckSpec(
        test,
        interval=_interval("interval", flag("interval")),
        timeout=_interval("timeout", flag("timeout")),
        start_period=_interval("start-period", flag("start-period")),
        start_interval=_interval("start-interval", flag("start-interval")),
        retries=_retries(flag("retries")),
    )


def _interval(name: str, value: str | None) -> int:
    """parseOptInterval: unset or 0 is 0; anything else at least a millisecond."""
    if not value:
        return 0
    nanos = go_duration(value)
    if nanos != 0 and nanos < _MILLISECOND:
        raise SyntaxProblem(f"Interval {go_quote(name)} cannot be less than 1ms")
    return nanos


def _retries(value: str | None) -> int:
    """strconv.ParseInt(value, 10, 32), never negative."""
    if not value:
        return 0
    if not _INT.fullmatch(value):
        raise SyntaxProblem(f"strconv.ParseInt: parsing {go_quote(value)}: invalid syntax")
    retries = int(value)
    if not -(2**31) <= retries < 2**31:
        raise SyntaxProblem(f"strconv.ParseInt: parsing {go_quote(value)}: value out of range")
    if retries < 0:
        raise SyntaxProblem(f"--retries cannot be negative ({retries})")
    return retries


def go_duration(text: str) -> int:
    """Go's time.ParseDuration, in nanoseconds (hypr.units has it for everyone)."""
    try:
        return units.go_duration(text)
    except ValueError as exc:
        raise SyntaxProblem(str(exc)) from None
