"""Volume names: Docker's rule for the ones users give, and the random ones of anonymous
volumes. Pure code."""

from __future__ import annotations

import re
import secrets

from hypr.errors import InvalidArgument

# Docker's volume name rule (daemon/names.RestrictedNamePattern): two characters at least.
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
# A volume's directory is named after it: longer names no filesystem would take.
MAX_NAME = 255
# A stack (compose project) is a directory of volumes/: one path component, never `.`/`..`.
_STACK = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
# Docker marks volumes made without a name with this label; `volume prune` takes them.
ANONYMOUS_LABEL = "com.docker.volume.anonymous"


def check_volume_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidArgument(
            f"invalid volume name {name!r}: use at least two of letters, digits, '_', '.', "
            "'-', starting with a letter or digit"
        )
    if len(name) > MAX_NAME:
        raise InvalidArgument(f"invalid volume name: longer than {MAX_NAME} characters")
    return name


def check_stack_name(stack: str) -> str:
    if not _STACK.match(stack) or len(stack) > MAX_NAME:
        raise InvalidArgument(f"invalid stack name {stack!r} for a volume")
    return stack


def new_anonymous_name() -> str:
    """64 random hex digits, as Docker names a volume made without a name."""
    return secrets.token_hex(32)


def directory_name(name: str, stack: str | None) -> str:
    """The name of a volume's directory: a stack's volume `<stack>_<key>` (compose's name
    for it) lives at `<stack>/<key>`, any other at its own name. A key that would not make
    a safe directory name of its own (`proj_..`) keeps the whole name."""
    if stack is None:
        return name
    key = name.removeprefix(f"{stack}_")
    return key if key != name and _STACK.match(key) else name
