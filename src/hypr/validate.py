"""Checks of request fields that the daemon and compose files share, so they agree."""

from __future__ import annotations

from hypr.errors import InvalidArgument

RESTART_POLICIES = ("no", "always", "on-failure", "unless-stopped")


def restart_policy(text: str) -> str:
    """Docker's `--restart` values: no, always, unless-stopped, on-failure[:N]."""
    policy, _, count = text.partition(":")
    if policy not in RESTART_POLICIES or (
        count and (policy != "on-failure" or not count.isdigit())
    ):
        raise InvalidArgument(f"invalid restart policy {text!r}")
    return text


def env_var(item: str) -> str:
    """`K=V` with a non-empty name, as `docker run -e` and compose's `environment` take."""
    if "=" not in item or item.startswith("="):
        raise InvalidArgument(f"invalid environment variable {item!r}: expected K=V")
    return item
