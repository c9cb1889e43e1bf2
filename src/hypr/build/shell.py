"""Docker's word lexer for variable substitution (BuildKit's frontend/dockerfile/shell/lex.go).

`expand` is BuildKit's ProcessWord (one word: quotes removed, variables substituted, spaces
kept) and `words` its ProcessWords (the same, then split on unquoted whitespace). Both follow
the Go code step by step so that a Dockerfile means here what it means to `docker build`;
errors raise `ShellError` (a ValueError) with BuildKit's message, which the builder reports
as a DockerfileError for the instruction being substituted.
"""

from __future__ import annotations

import re
from collections.abc import Callable

Lookup = Callable[[str], str | None]  # a variable's value, None when it is not set

_SPECIAL_PARAMS = frozenset("@*#?-$!0")
_REGEX_SPECIALS = frozenset("[]{}.+()|^$")
_UNMATCHED = "unexpected end of statement while looking for matching "
_MISSING_BRACE = "syntax error: missing '}'"


class ShellError(ValueError):
    """A word that cannot be substituted: `${A:?}` with A unset, a missing quote or brace."""


def is_space(ch: str) -> bool:
    """Go's unicode.IsSpace: Python's isspace() minus the ASCII separators 0x1c-0x1f."""
    return ch.isspace() and ch not in "\x1c\x1d\x1e\x1f"


def expand(word: str, lookup: Lookup, escape: str = "\\") -> str:
    """ProcessWord: `word` with its quotes removed and its variables substituted."""
    return Lexer(escape).process(word, lookup)[0]


def words(text: str, lookup: Lookup, escape: str = "\\") -> list[str]:
    """ProcessWords: `text` substituted, then split where unquoted whitespace separates."""
    return Lexer(escape).process(text, lookup)[1]


class _Words:
    """BuildKit's wordsStruct: collects words, splitting substituted values on spaces."""

    def __init__(self) -> None:
        self.buf = ""
        self.words: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if is_space(ch):
            if self.in_word and self.buf:
                self.words.append(self.buf)
                self.buf = ""
                self.in_word = False
        else:
            self.add_raw(ch)

    def add_raw(self, text: str) -> None:
        self.buf += text
        self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def result(self) -> list[str]:
        if self.buf:
            self.words.append(self.buf)
            self.buf = ""
            self.in_word = False
        return self.words


class Lexer:
    """One substitution pass; the flags are BuildKit's Lex fields of the same names."""

    def __init__(
        self,
        escape: str = "\\",
        *,
        raw_quotes: bool = False,
        raw_escapes: bool = False,
        skip_unset: bool = False,
        skip_quotes: bool = False,
    ) -> None:
        self.escape = escape
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_unset = skip_unset
        self.skip_quotes = skip_quotes
        self.text = ""
        self.pos = 0
        self.lookup: Lookup = lambda _name: None

    def process(self, text: str, lookup: Lookup) -> tuple[str, list[str]]:
        """The word substituted, and the words it splits into."""
        self.text, self.pos, self.lookup = text, 0, lookup
        try:
            return self._stop_on("", self.raw_escapes)
        except ShellError as e:
            raise ShellError(f"failed to process {go_quote(text)}: {e}") from None

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _next(self) -> str:
        ch = self._peek()
        self.pos += 1 if ch else 0
        return ch

    def _stop_on(self, stop: str, raw_escapes: bool) -> tuple[str, list[str]]:
        """processStopOn: read up to `stop` ("" = the end), substituting as it goes."""
        saved, self.raw_escapes = self.raw_escapes, raw_escapes
        try:
            return self._stop_on_inner(stop)
        finally:
            self.raw_escapes = saved

    def _stop_on_inner(self, stop: str) -> tuple[str, list[str]]:
        result: list[str] = []
        found = _Words()
        while ch := self._peek():
            if stop and ch == stop:
                self._next()
                return "".join(result), found.result()
            special = self._special(ch)
            if special is not None:
                value = special()
                result.append(value)
                if ch == "$":
                    found.add_string(value)
                else:
                    found.add_raw(value)
                continue
            ch = self._next()
            if ch == self.escape:
                if self.raw_escapes:
                    found.add_raw(ch)
                    result.append(ch)
                ch = self._next()
                if not ch:
                    break
                found.add_raw(ch)
            else:
                found.add_char(ch)
            result.append(ch)
        if stop:
            raise ShellError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), found.result()

    def _special(self, ch: str) -> Callable[[], str] | None:
        if ch == "$":
            return self._dollar
        if ch == "<":
            return self._possible_heredoc
        if not self.skip_quotes and ch == "'":
            return self._single_quote
        if not self.skip_quotes and ch == '"':
            return self._double_quote
        return None

    def _single_quote(self) -> str:
        """Everything up to the next ' is literal; nothing escapes a single quote."""
        ch = self._next()
        out = [ch] if self.raw_quotes else []
        while True:
            ch = self._next()
            if not ch:
                raise ShellError(_UNMATCHED + "single-quote")
            if ch == "'":
                if self.raw_quotes:
                    out.append(ch)
                return "".join(out)
            out.append(ch)

    def _double_quote(self) -> str:
        """Literal up to the next ", except `$` and the escape of `"`, `$` and itself."""
        out: list[str] = []
        ch = self._next()
        if self.raw_quotes:
            out.append(ch)
        while True:
            peek = self._peek()
            if not peek:
                raise ShellError(_UNMATCHED + "double-quote")
            if peek == '"':
                ch = self._next()
                if self.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if peek == "$":
                out.append(self._dollar())
                continue
            ch = self._next()
            if ch == self.escape:
                out.append(self._quoted_escape())
            else:
                out.append(ch)

    def _quoted_escape(self) -> str:
        """The escape in double quotes: only `"`, `$` and the escape itself are escaped."""
        raw = self.escape if self.raw_escapes else ""
        following = self._peek()
        if not following:
            return raw
        if following in ('"', "$", self.escape):
            return raw + self._next()
        return raw + self.escape

    def _name(self) -> str:
        """A variable name: letters, digits and _, or all digits, or one special parameter."""
        name: list[str] = []
        while ch := self._peek():
            if not name and ch.isdecimal():
                while self._peek().isdecimal():
                    name.append(self._next())
                return "".join(name)
            if not name and ch in _SPECIAL_PARAMS:
                return self._next()
            if not (ch.isalpha() or ch.isdecimal() or ch == "_"):
                break
            name.append(self._next())
        return "".join(name)

    def _get(self, name: str) -> str | None:
        return self.lookup(name)

    def _dollar(self) -> str:
        self._next()
        if self._peek() != "{":
            name = self._name()
            if not name:
                return "$"
            value = self._get(name)
            if value is None and self.skip_unset:
                return "$" + name
            return value or ""
        self._next()
        if not self._peek():
            raise ShellError(_MISSING_BRACE)
        if self._peek() in "{}:":
            raise ShellError("syntax error: bad substitution")
        name = self._name()
        ch = self._next()
        if ch == "}":
            value = self._get(name)
            if value is None and self.skip_unset:
                return "${" + name + "}"
            return value or ""
        if ch == "/":
            return self._replace(name)
        return self._modifier(name, ch)

    def _modifier(self, name: str, ch: str) -> str:
        """`${name<op>word}` for the operators - + ? # % and their `:` forms."""
        chs, null_is_unset = ch, False
        if ch == ":":
            null_is_unset = True
            ch = self._next()
            chs += ch
        if not ch or ch not in "+-?#%":
            raise ShellError(f"unsupported modifier ({chs}) in substitution")
        trims = ch in "#%"
        if null_is_unset and trims:
            raise ShellError(f"unsupported modifier ({chs}) in substitution")
        word = self._closing(lambda: self._stop_on("}", trims)[0], _MISSING_BRACE)
        value = self._get(name)
        if value is None and self.skip_unset:
            return "${" + name + chs + word + "}"
        if trims:
            greedy = word.startswith(ch)
            word = word[1:] if greedy else word
            trim = _trim_suffix if ch == "%" else _trim_prefix
            return trim(word, value or "", greedy)
        return _default(name, ch, value, word, null_is_unset)

    def _closing(self, read: Callable[[], str], eof_message: str) -> str:
        """A nested read that reports a missing closer the way BuildKit does."""
        try:
            return read()
        except ShellError:
            if not self._peek():
                raise ShellError(eof_message) from None
            raise

    def _replace(self, name: str) -> str:
        """`${name/pattern/replacement}` and `${name//pattern/replacement}`."""
        replace_all = self._peek() == "/"
        if replace_all:
            self._next()
        missing_slash = "syntax error: missing '/' in ${}"
        pattern = self._closing(lambda: self._stop_on("/", True)[0], missing_slash)
        replacement = self._closing(lambda: self._stop_on("}", True)[0], _MISSING_BRACE)
        value = self._get(name)
        if value is None and self.skip_unset:
            return "${" + name + "/" + pattern + "/" + replacement + "}"
        regex = _pattern_regex(pattern, greedy=True, anchored=False)
        text = value or ""
        return regex.sub(lambda _m: replacement, text, count=0 if replace_all else 1)

    def _possible_heredoc(self) -> str:
        """`<<` (with the spaces after it) stays glued to the word that follows."""
        self._next()
        if self._peek() != "<":
            return "<"
        self._next()
        space: list[str] = []
        while self._peek() and self._peek() in "\t\r ":
            space.append(self._next())
        return "<<" + "".join(space)


def _default(name: str, op: str, value: str | None, word: str, null_is_unset: bool) -> str:
    """`-` (default), `+` (alternative) and `?` (required) on a variable's value."""
    unset = value is None or (null_is_unset and value == "")
    if op == "-":
        return word if unset or value is None else value
    if op == "+":
        return "" if unset else word
    if value is None:
        raise ShellError(f"{name}: {word or 'is not allowed to be unset'}")
    if null_is_unset and value == "":
        raise ShellError(f"{name}: {word or 'is not allowed to be empty'}")
    return value


def _pattern_regex(pattern: str, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """convertShellPatternToRegex: ? and * as in the shell, no bracket expressions."""
    out = ["^"] if anchored else []
    i = 0
    while i < len(pattern):
        tok = pattern[i]
        i += 1
        if tok == "*":
            out.append(".*" if greedy else ".*?")
            continue
        if tok == "?":
            out.append(".")
            continue
        if tok == "\\":
            following = pattern[i] if i < len(pattern) else ""
            if following in ("}", "/"):
                continue
            if following not in ("*", "?", "\\"):
                raise ShellError(
                    f"invalid pattern ({pattern}) in substitution: invalid escape '\\{following}'"
                )
            out.append("\\" + following)
            i += 1
            continue
        out.append("\\" + tok if tok in _REGEX_SPECIALS else tok)
    try:
        return re.compile("".join(out))
    except re.error as e:
        raise ShellError(f"invalid pattern ({pattern}) in substitution: {e}") from None


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    match = _pattern_regex(pattern, greedy, anchored=True).search(value)
    return value[match.end() :] if match else value


def _reverse_pattern(pattern: str) -> str:
    """The pattern reversed, keeping each escape before the character it escapes."""
    tokens: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i != len(pattern) - 1:
            tokens.append(pattern[i : i + 2])
            i += 2
        else:
            tokens.append(pattern[i])
            i += 1
    return "".join(reversed(tokens))


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    """Shortest/longest suffix match as a prefix match on both strings reversed."""
    return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]


def go_quote(text: str) -> str:
    """Go's %q, closely enough for error messages."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
