"""Sizes as Docker writes and reads them, the same for the CLI and for compose; spans of
time as Docker writes them.

A bare number is bytes (`docker run -m 268435456`, compose's `mem_limit: 268435456`);
`k`, `m`, `g`, `t` (optionally followed by `b` or `ib`) are powers of 1024, as in
Docker's `RAMInBytes`. Pure code: no imports from the rest of hypr but its errors.
"""

from __future__ import annotations

import re
from datetime import datetime
from fractions import Fraction

from hypr.errors import InvalidArgument

# The guest kernel stops silently below this much memory (PLATFORM.md).
MIN_MEMORY_MIB = 96
MIB = 2**20

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)
_FACTORS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_size(text: str | int | float) -> int:
    """`256m`, `1g`, `1.5GiB`, `268435456` (bytes) to a number of bytes."""
    match = _SIZE.fullmatch(str(text).strip())
    if match is None:
        raise InvalidArgument(f"invalid size {str(text)!r} (e.g. 256m, 1g)")
    number, unit = match.groups()
    return int(float(number) * _FACTORS[unit.lower()])


def memory_mib(text: str | int | float) -> int:
    """A guest's memory size in whole MiB; too little to boot is refused, naming what a
    bare number means so that `512` (bytes) is not mistaken for 512 MiB."""
    size = parse_size(text)
    if size >= MIN_MEMORY_MIB * MIB:
        return size // MIB
    raw = str(text).strip()
    if raw.isdigit():
        raise InvalidArgument(
            f"memory {raw} is {raw} bytes, below the {MIN_MEMORY_MIB} MiB the guest kernel "
            f"needs to boot; did you mean {raw}m?"
        )
    raise InvalidArgument(
        f"memory {raw} is below the {MIN_MEMORY_MIB} MiB the guest kernel needs to boot"
    )


def human_size(size: float) -> str:
    """Bytes as `docker images` writes them: decimal units, three significant digits."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.3g}{unit}"
        size /= 1000
    raise AssertionError("unreachable")


def human_duration(seconds: float) -> str:
    """A span as Docker's `HumanDuration` writes it: "2 days", "About an hour"."""
    s = int(seconds)
    hours = round(s / 3600)
    if s < 60:
        return {0: "Less than a second", 1: "1 second"}.get(s, f"{s} seconds")
    if s < 3600:
        return "About a minute" if s < 120 else f"{s // 60} minutes"
    if hours < 48:
        return "About an hour" if hours == 1 else f"{hours} hours"
    for limit, size, name in _SPANS:
        if hours < limit:
            return f"{hours // size} {name}"
    return f"{hours // (24 * 365)} years"


# (below this many hours, count in units of this many hours, named) after "N hours"
_SPANS = (
    (24 * 7 * 2, 24, "days"),
    (24 * 30 * 2, 24 * 7, "weeks"),
    (24 * 365 * 2, 24 * 30, "months"),
)


def unix_time(created: str) -> int:
    """An RFC 3339 time (Go writes nanoseconds, which Python does not read) in seconds."""
    if not created:
        return 0
    head, dot, rest = created.partition(".")
    if dot:
        zone = rest.lstrip("0123456789")
        created = f"{head}.{rest[: len(rest) - len(zone)][:6]}{zone}"
    try:
        return int(datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000,
          "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}  # fmt: skip
_DURATION_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")


def go_duration(text: str) -> int:
    """Go's time.ParseDuration, in nanoseconds: `30s`, `1m30s`, `1.5h`, `500ms`, `0` (what
    Docker's --health-interval and HEALTHCHECK take); ValueError with Go's message."""
    invalid = f'time: invalid duration "{text}"'
    body = text[1:] if text[:1] in "+-" else text
    if body == "0":
        return 0
    if not body:
        raise ValueError(invalid)
    total = Fraction(0)
    pos = 0
    while pos < len(body):
        match = _DURATION_PART.match(body, pos)
        assert match is not None  # the pattern matches the empty string
        whole, frac, unit = match[1], match[2], match[3]
        if not whole and not frac:
            raise ValueError(invalid)
        if not unit:
            raise ValueError(f'time: missing unit in duration "{text}"')
        if unit not in _UNITS:
            raise ValueError(f'time: unknown unit "{unit}" in duration "{text}"')
        number = Fraction(int(whole or "0"))
        if frac:
            number += Fraction(int(frac), 10 ** len(frac))
        total += number * _UNITS[unit]
        pos = match.end()
    nanos = int(total)
    if nanos > 2**63 - 1:
        raise ValueError(invalid)
    return -nanos if text.startswith("-") else nanos
