"""Docker's `filters` query parameter and its matching rules, shared by the list and
events endpoints: one parser, so every endpoint accepts both of Docker's spellings and
answers an unknown key the same way."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import TypeVar

from hypr.errors import InvalidArgument

Filters = dict[str, list[str]]
T = TypeVar("T")


def parse_filters(raw: str | None, known: Collection[str] | None = None) -> Filters:
    """`{"key": ["value", ...]}`, or the older `{"key": {"value": true}}`; a key that is not
    in `known` (when given) answers 400, as Docker's do."""
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        raise InvalidArgument(f"invalid filters: not JSON: {raw}") from None
    if not isinstance(parsed, dict):
        raise InvalidArgument("invalid filters: expected a JSON object")
    result: Filters = {}
    for key, values in parsed.items():
        if isinstance(values, dict):
            values = [v for v, on in values.items() if on]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise InvalidArgument(f"invalid filters: {key} must be a list of strings")
        if known is not None and key not in known:
            raise InvalidArgument(f"invalid filter '{key}'")
        result[key] = values
    return result


def match_labels(wanted: list[str], labels: Mapping[str, str]) -> bool:
    """Every `key` or `key=value` of the filter holds (Docker ANDs label filters)."""
    for item in wanted:
        key, eq, value = item.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True


def match_any(patterns: list[str], value: str) -> bool:
    """Docker's `Match` for names and ids: any pattern equals the value or, read as a
    regular expression, is found in it (so `web` matches `web-1`)."""
    for pattern in patterns:
        if pattern == value:
            return True
        try:
            if re.search(pattern, value):
                return True
        except re.error:
            if pattern in value:
                return True
    return False


def match_prefix(patterns: list[str], *values: str) -> bool:
    """Docker's `FuzzyMatch`: a pattern equals one of the values or begins it."""
    return any(v.startswith(p) for p in patterns for v in values if v)


def boolean(filters: Filters, key: str) -> bool | None:
    """A filter that takes `true`/`false` (or `1`/`0`); None when not given."""
    values = filters.get(key)
    if not values:
        return None
    value = values[-1].lower()
    if value not in ("true", "false", "1", "0"):
        raise InvalidArgument(f"invalid filter '{key}={values[-1]}': use true or false")
    return value in ("true", "1")


_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(h|m|s|ms|us|ns))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|ns|m|s)")
_UNIT_NANOS = {"h": 3600e9, "m": 60e9, "s": 1e9, "ms": 1e6, "us": 1e3, "ns": 1.0}


def timestamp_nanos(text: str, now_nanos: int | None = None) -> int:
    """Docker's times for `since`, `until` and the `until` filter: Unix seconds (with up to
    nine decimals), an RFC 3339 time, or a Go duration such as `10m` counted back from now."""
    text = text.strip()
    now = time.time_ns() if now_nanos is None else now_nanos
    seconds, dot, fraction = text.partition(".")
    if seconds.isdigit() and (not dot or fraction.isdigit()):
        return int(seconds) * 1_000_000_000 + int((fraction + "000000000")[:9] or 0)
    if _DURATION.match(text):
        span = sum(float(n) * _UNIT_NANOS[unit] for n, unit in _DURATION_PART.findall(text))
        return now - int(span)
    return rfc3339_nanos(text, what=text)


def rfc3339_nanos(text: str, what: str = "time") -> int:
    """An RFC 3339 time (Go writes nanoseconds, which Python does not read) in nanoseconds."""
    head, dot, rest = text.replace("Z", "+00:00").partition(".")
    digits = rest[: len(rest) - len(rest.lstrip("0123456789"))] if dot else ""
    zone = rest[len(digits) :] if dot else ""
    try:
        moment = datetime.fromisoformat(head + zone if dot else head)
    except ValueError:
        raise InvalidArgument(f"invalid time {what!r}: use Unix seconds or RFC 3339") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    whole = int(moment.timestamp()) * 1_000_000_000
    return whole + int((digits + "000000000")[:9] or 0)


def prune_selector(
    wanted: Filters, labels: Callable[[T], Mapping[str, str]], created: Callable[[T], str]
) -> Callable[[T], bool]:
    """Docker's prune filters, for any object with labels and an RFC 3339 creation time:
    `until` (created before it), `label` (all hold), `label!` (none holds)."""
    until = timestamp_nanos(wanted["until"][-1]) if wanted.get("until") else None

    def only(item: T) -> bool:
        have = labels(item)
        if "label" in wanted and not match_labels(wanted["label"], have):
            return False
        if "label!" in wanted and any(match_labels([x], have) for x in wanted["label!"]):
            return False
        return until is None or rfc3339_nanos(created(item)) < until

    return only
