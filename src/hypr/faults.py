"""Fault-injection points for crash tests: hyprd kills itself with SIGKILL at a named step.

A crash test starts hyprd with `HYPR_FAULT=<point>` (for example `run.spawned`), drives the
operation, sees the daemon die exactly there, restarts it without the variable and asserts
that reconcile leaves nothing behind. Without the variable a point costs one dict lookup.
Every point is listed in `POINTS`, so a test can walk them all and a typo fails loudly.
"""

from __future__ import annotations

import os
import signal

ENV = "HYPR_FAULT"

POINTS: dict[str, str] = {}


def register(name: str, where: str) -> str:
    """Declare a point once at import time; returns the name for use with `point`."""
    POINTS[name] = where
    return name


def point(name: str) -> None:
    """Die here, at once and uncleanly, if this run was asked to."""
    if name not in POINTS:
        raise KeyError(f"unregistered fault point {name!r}")
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
