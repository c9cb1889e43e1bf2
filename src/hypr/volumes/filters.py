"""`volume ls --filter` as Docker reads it: `name` (part of a name; several: any of them),
`label` (`key` or `key=value`; several: all of them), `label!`, `driver`, `dangling`
(`true`/`1`: no VM uses it, `false`/`0`: one does). Pure code."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hypr.errors import InvalidArgument
from hypr.state.volumes import VolumeRecord

KEYS = ("dangling", "driver", "label", "label!", "name")
_BOOLS = {"true": True, "1": True, "false": False, "0": False}


@dataclass(frozen=True)
class VolumeFilter:
    names: tuple[str, ...] = ()
    drivers: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    not_labels: tuple[str, ...] = ()
    dangling: bool | None = None

    def matches(self, vol: VolumeRecord, in_use: bool) -> bool:
        return (
            (not self.names or any(part in vol.name for part in self.names))
            and (not self.drivers or vol.driver in self.drivers)
            and all(_has_label(vol, label) for label in self.labels)
            and not any(_has_label(vol, label) for label in self.not_labels)
            and (self.dangling is None or self.dangling != in_use)
        )


def parse_filters(raw: Mapping[str, Sequence[str]]) -> VolumeFilter:
    """Docker's `filters` ({"label": ["a=b"], ...}); an unknown key is refused."""
    for key in raw:
        if key not in KEYS:
            raise InvalidArgument(f"invalid filter {key!r}: volumes filter by {', '.join(KEYS)}")
    dangling = None
    for value in raw.get("dangling", ()):
        if value.lower() not in _BOOLS:
            raise InvalidArgument(f"invalid filter 'dangling={value}': use true or false")
        dangling = _BOOLS[value.lower()]
    return VolumeFilter(
        names=tuple(raw.get("name", ())),
        drivers=tuple(raw.get("driver", ())),
        labels=tuple(raw.get("label", ())),
        not_labels=tuple(raw.get("label!", ())),
        dangling=dangling,
    )


def _has_label(vol: VolumeRecord, label: str) -> bool:
    key, sep, value = label.partition("=")
    return key in vol.labels and (not sep or vol.labels[key] == value)
