"""The Dockerfile's lexical layer, ported from BuildKit's frontend/dockerfile/parser.

Kept apart from `hypr.build.dockerfile` (which builds instructions and stages) so that each
stays readable: this module turns text into logical lines (directives, comments,
continuations, heredoc bodies), splits a line into keyword, flags and arguments, and holds
the small grammars Docker applies to arguments (JSON arrays, name=value words, heredoc
words, Go durations). Errors raise `SyntaxProblem`; the caller adds file, line and keyword.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

from hypr.build.shell import Lexer, ShellError, is_space

WHITESPACE = re.compile(r"[\t\v\f\r ]+")  # BuildKit's reWhitespace
_GO_SPACE = "\t\n\f\r "  # RE2's \s
_DIRECTIVE = re.compile(rf"([a-zA-Z][a-zA-Z0-9]*)[{_GO_SPACE}]*=[{_GO_SPACE}]*(.+?)[{_GO_SPACE}]*")
_HEREDOC = re.compile(rf"(\d*)<<(-?)[{_GO_SPACE}]*([^<]*)")
_LEADING_TABS = re.compile(r"^\t+", re.MULTILINE)
_KNOWN_DIRECTIVES = frozenset({"syntax", "escape", "check"})


class SyntaxProblem(ValueError):
    """What is wrong, in BuildKit's words; the line it happened on when the reader knows."""

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(message)
        self.line = line


def lstrip_space(text: str) -> str:
    """bytes.TrimLeftFunc(unicode.IsSpace)."""
    i = 0
    while i < len(text) and is_space(text[i]):
        i += 1
    return text[i:]


def strip_space(text: str) -> str:
    """strings.TrimSpace."""
    text = lstrip_space(text)
    end = len(text)
    while end and is_space(text[end - 1]):
        end -= 1
    return text[:end]


def is_comment(line: str) -> bool:
    return lstrip_space(line).startswith("#")


class LineReader:
    """Physical lines in, logical lines out, exactly as BuildKit's Parse scans them.

    Directives are looked for until the first line that is not one; the escape token they
    set drives continuations. Heredoc bodies are read on demand with `heredoc_body`, right
    after the logical line that announced them.
    """

    def __init__(self, text: str) -> None:
        text = text.removeprefix("\ufeff")
        parts = text.split("\n")
        self.lines = [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
        self.line = 0  # 1-based number of the last line read
        self.escape = "\\"
        self.syntax: str | None = None
        self._directives_done = False
        self._seen: set[str] = set()
        self._continuation = self._continuation_regex()

    def _next(self) -> str | None:
        if self.line >= len(self.lines):
            return None
        self.line += 1
        return self.lines[self.line - 1]

    def _continuation_regex(self) -> re.Pattern[str]:
        e = re.escape(self.escape)
        return re.compile(rf"([^{e}]){e}[ \t]*\Z|^{e}[ \t]*\Z")

    def _directive(self, token: str) -> None:
        """DirectiveParser.ParseLine: `# key=value` while nothing else has been seen."""
        if self._directives_done:
            return
        match = _DIRECTIVE.fullmatch(lstrip_space(token[1:])) if token.startswith("#") else None
        key = match[1].lower() if match else ""
        if match is None or key not in _KNOWN_DIRECTIVES:
            self._directives_done = True
            return
        if key in self._seen:
            raise SyntaxProblem(f"only one {key} parser directive can be used", self.line)
        self._seen.add(key)
        value = match[2]
        if key == "escape":
            if value not in ("`", "\\"):
                raise SyntaxProblem(
                    f"invalid escape token '{value}' does not match ` or \\", self.line
                )
            self.escape = value
            self._continuation = self._continuation_regex()
        elif key == "syntax":
            self.syntax = value

    def _process(self, raw: str, strip_left: bool) -> str:
        """processLine: newline off, directives noted, comment lines emptied."""
        token = raw.rstrip("\r\n")
        if strip_left:
            token = lstrip_space(token)
        self._directive(token)
        return "" if is_comment(token) else token

    def _trim_continuation(self, line: str) -> tuple[str, bool]:
        """The line without its trailing escape, and whether the instruction ends here."""
        if self._continuation.search(line):
            return self._continuation.sub(lambda m: m[1] or "", line), False
        return line, True

    def logical_lines(self) -> Iterator[tuple[int, str]]:
        """(first line number, the instruction's text with continuations joined)."""
        while (raw := self._next()) is not None:
            text, ended = self._trim_continuation(self._process(raw, strip_left=True))
            start = self.line
            if ended and not text:
                continue
            parts = [text]
            while not ended and (raw := self._next()) is not None:
                body = self._process(raw, strip_left=False)
                if is_comment(raw) or not lstrip_space(body):
                    continue  # comments and empty lines inside a continuation vanish
                body, ended = self._trim_continuation(body)
                parts.append(body)
            yield start, "".join(parts)

    def heredoc_body(self, name: str, chomp: bool) -> str:
        """The lines up to the terminator `name` (tab-indented too for `<<-`), newlines kept."""
        start = self.line
        content: list[str] = []
        while (raw := self._next()) is not None:
            candidate = raw.rstrip("\r\n")
            if chomp:
                candidate = candidate.lstrip("\t")
            if candidate == name:
                return "".join(content)
            content.append(raw)
        raise SyntaxProblem("unterminated heredoc", start)


def chomp_heredoc(content: str) -> str:
    """`<<-`: leading tabs off every line."""
    return _LEADING_TABS.sub("", content)


@dataclass(frozen=True)
class HeredocWord:
    """A `<<WORD` found in an instruction: its name and how the body is to be treated."""

    name: str
    expand: bool
    chomp: bool


def parse_heredoc(word: str) -> HeredocWord | None:
    """ParseHeredoc: a word like `<<EOF`, `<<-"EOF"`, `2<<EOF`; None for anything else."""
    match = _HEREDOC.fullmatch(word)
    if match is None or not match[3]:
        return None
    unset = lambda _name: None  # noqa: E731
    try:
        plain = Lexer(skip_unset=True).process(match[3], unset)[1]
        if len(plain) != 1:
            return None
        raw = Lexer(skip_unset=True, raw_quotes=True).process(match[3], unset)[1]
    except ShellError as e:
        raise SyntaxProblem(str(e)) from None
    quotes = sum(w.count("'") + w.count('"') for w in plain[:1])
    raw_quotes = sum(w.count("'") + w.count('"') for w in raw[:1])
    return HeredocWord(name=plain[0], expand=quotes == raw_quotes, chomp=match[2] == "-")


def heredocs_in(line: str) -> list[HeredocWord]:
    """heredocsFromLine: every heredoc word of an instruction, in order."""
    lexer = Lexer(raw_quotes=True, raw_escapes=True, skip_unset=True)
    try:
        found = lexer.process(line, lambda _name: None)[1]
    except ShellError:
        return []
    return [doc for word in found if (doc := parse_heredoc(word)) is not None]


def split_command(line: str, escape: str) -> tuple[str, list[str], str]:
    """splitCommand: (keyword as written, the `--flag` words, the rest)."""
    parts = WHITESPACE.split(strip_space(line), maxsplit=1)
    if len(parts) < 2:
        return parts[0], [], ""
    rest, flags = extract_flags(parts[1], escape)
    return parts[0], flags, strip_space(rest)


def extract_flags(line: str, escape: str) -> tuple[str, list[str]]:
    """extractBuilderFlags: leading words that start with `--`, unquoted; `--` ends them."""
    words: list[str] = []
    pos = 0
    while True:
        while pos < len(line) and is_space(line[pos]):
            pos += 1
        if not line.startswith("--", pos):
            return line[pos:], words
        word, pos, blank_ok = _flag_word(line, pos, escape)
        if word == "--":
            return line[pos:], words
        if blank_ok or word:
            words.append(word)
        if pos >= len(line):
            return "", words


def _flag_word(line: str, pos: int, escape: str) -> tuple[str, int, bool]:
    """One flag word from `pos`: quotes removed, escapes applied; where it ended."""
    out: list[str] = []
    quote = ""
    blank_ok = False
    while pos < len(line):
        ch = line[pos]
        if not quote and is_space(ch):
            break
        pos += 1
        if not quote and ch in "'\"":
            quote, blank_ok = ch, True
            continue
        if quote and ch == quote:
            quote = ""
            continue
        if ch == escape:
            if pos == len(line):
                quote = ""
                continue
            ch = line[pos]
            pos += 1
        out.append(ch)
    return "".join(out), pos, blank_ok


def parse_words(rest: str, escape: str) -> list[str]:
    """parseWords: split on unquoted whitespace, quotes and escapes kept for substitution."""
    words: list[str] = []
    buf: list[str] = []
    quote = ""
    blank_ok = False
    i = 0
    while i < len(rest):
        ch = rest[i]
        i += 1
        if not quote and is_space(ch):
            if blank_ok or buf:
                words.append("".join(buf))
            buf, blank_ok = [], False
            continue
        if not quote and ch in "'\"":
            quote, blank_ok = ch, True
        elif quote and ch == quote:
            quote = ""
            buf.append(ch)
            continue
        if ch == escape and (not quote or quote != "'"):
            if i == len(rest):
                quote = ""
                continue
            buf.append(ch)
            ch = rest[i]
            i += 1
        buf.append(ch)
    if blank_ok or buf:
        words.append("".join(buf))
    return words


class NotStringArray(SyntaxProblem):
    """A JSON array with something other than strings: an error, not the shell form."""

    def __init__(self) -> None:
        super().__init__("when using JSON array syntax, arrays must be comprised of strings only")


def _no_constants(name: str) -> object:
    raise ValueError(name)  # Go's encoding/json knows no NaN or Infinity


def parse_json(rest: str) -> list[str] | None:
    """parseJSON: the array when `rest` is a JSON array of strings, None when not JSON."""
    rest = lstrip_space(rest)
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest, parse_constant=_no_constants)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(item, str) for item in value):
        raise NotStringArray()
    return value
