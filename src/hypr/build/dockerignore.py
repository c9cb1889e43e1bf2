""".dockerignore as Docker reads it: moby/patternmatcher and its ignorefile.ReadAll.

Patterns are cleaned like Go's path.Clean, `**` spans any number of directories, `*` and
`?` stop at `/`, `[...]` are character classes, `!` re-includes; the last pattern that
matches a path or one of its parent directories decides.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

from hypr.errors import InvalidArgument

_ESCAPED = frozenset(".+()|{}$")  # regexp specials that mean nothing to filepath.Match
_WILD = re.compile(r"[*?\[\]\\]")


def go_clean(path: str) -> str:
    """Go's path.Clean (posixpath.normpath keeps a leading `//`, Go does not)."""
    if not path:
        return "."
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


@dataclass(frozen=True)
class Pattern:
    """One cleaned pattern and the matcher patternmatcher compiles it to."""

    text: str  # cleaned, without the `!`
    exclusion: bool
    regex: re.Pattern[str]

    def matches(self, path: str) -> bool:
        suffix = self.text[2:]
        if self.text.startswith("**") and not _WILD.search(suffix):
            # patternmatcher's suffixMatch: `**foo` is any path ending in "foo"
            return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        return self.regex.fullmatch(path) is not None


def _check_syntax(pattern: str) -> None:
    """filepath.Match's ErrBadPattern: unclosed or empty classes, a trailing escape."""
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "\\":
            if i == len(pattern):
                raise InvalidArgument(f".dockerignore: syntax error in pattern {pattern!r}")
            i += 1
        elif ch == "[":
            i = _class_end(pattern, i)


def _class_end(pattern: str, i: int) -> int:
    """Where the character class opened before `i` ends; bad classes raise."""
    bad = InvalidArgument(f".dockerignore: syntax error in pattern {pattern!r}")
    if i < len(pattern) and pattern[i] == "^":
        i += 1
    ranges = 0
    while True:
        if i < len(pattern) and pattern[i] == "]" and ranges:
            return i + 1
        for _ in range(2):  # lo, then hi after a `-`
            if i >= len(pattern) or pattern[i] in "-]":
                raise bad
            i += 2 if pattern[i] == "\\" else 1
            if i > len(pattern):
                raise bad
            if i >= len(pattern) or pattern[i] != "-":
                break
            i += 1
        ranges += 1


def _compile(pattern: str) -> re.Pattern[str]:
    """Pattern.compile: the regular expression patternmatcher builds (exact and prefix
    matches become regexes too; their meaning is the same)."""
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*" and pattern.startswith("*", i):
            i += 1
            if pattern.startswith("/", i):
                i += 1
            out.append(".*" if i == len(pattern) else "(.*/)?")
        elif ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch in _ESCAPED:
            out.append("\\" + ch)
        elif ch == "\\":
            out.append(re.escape(pattern[i]) if i < len(pattern) else "\\\\")
            i += 1
        else:
            out.append(ch)
    return re.compile("".join(out))


class IgnoreRules:
    """The patterns of one .dockerignore, in order."""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns: list[Pattern] = []
        for raw in patterns:
            text = raw.strip()
            if not text:
                continue
            text = go_clean(text)
            exclusion = text.startswith("!")
            if exclusion:
                if len(text) == 1:
                    raise InvalidArgument('.dockerignore: illegal exclusion pattern: "!"')
                text = text[1:]
            _check_syntax(text)
            self.patterns.append(Pattern(text, exclusion, _compile(text)))

    @classmethod
    def from_text(cls, text: str) -> IgnoreRules:
        """ignorefile.ReadAll: `#` lines skipped, whitespace trimmed, paths cleaned."""
        patterns = []
        for line in text.removeprefix("\ufeff").splitlines():
            if line.startswith("#"):
                continue
            pattern = line.strip()
            if not pattern:
                continue
            invert = pattern.startswith("!")
            if invert:
                pattern = pattern[1:].strip()
            if pattern:
                pattern = go_clean(pattern)
                if len(pattern) > 1 and pattern.startswith("/"):
                    pattern = pattern[1:]
            patterns.append("!" + pattern if invert else pattern)
        return cls(patterns)

    def plus(self, patterns: list[str]) -> IgnoreRules:
        """These rules with more patterns after them."""
        more = IgnoreRules(patterns)
        more.patterns = self.patterns + more.patterns
        return more

    @property
    def exclusions(self) -> bool:
        return any(p.exclusion for p in self.patterns)

    def ignored(self, rel_path: str) -> bool:
        """MatchesOrParentMatches: whether `rel_path` (slash-separated, relative to the
        context) is left out of the context."""
        path = go_clean(rel_path)
        if path == ".":
            return False
        parent = posixpath.dirname(path)
        parents = parent.split("/") if parent else []
        prefixes = ["/".join(parents[: i + 1]) for i in range(len(parents))]
        matched = False
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue
            if pattern.matches(path) or any(pattern.matches(p) for p in prefixes):
                matched = not pattern.exclusion
        return matched

    def may_contain_exceptions(self, dir_rel: str) -> bool:
        """Whether an ignored directory must still be walked: an exception pattern starts
        with it (the CLI's rule; `!**/x` does not count, as in Docker)."""
        prefix = go_clean(dir_rel) + "/"
        return any(p.exclusion and (p.text + "/").startswith(prefix) for p in self.patterns)


def read_rules(context: Path, dockerfile: Path) -> IgnoreRules:
    """`<Dockerfile>.dockerignore` next to the Dockerfile wins over the context's
    `.dockerignore` (BuildKit's rule); with neither, nothing is ignored."""
    for candidate in (dockerfile.with_name(dockerfile.name + ".dockerignore"),
                      context / ".dockerignore"):  # fmt: skip
        try:
            text = candidate.read_text(errors="surrogateescape")
        except FileNotFoundError:
            continue
        except OSError as e:
            raise InvalidArgument(f"cannot read {candidate}: {e.strerror}") from None
        return IgnoreRules.from_text(text)
    return IgnoreRules([])
