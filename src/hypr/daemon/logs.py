"""Logging configured by HYPR_LOG, in the style of RUST_LOG.

`HYPR_LOG=debug` sets the level of everything; `HYPR_LOG=info,hypr.network=debug` sets a
default and per-module levels.
"""

from __future__ import annotations

import logging
import sys

_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure_logging(spec: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)-5s %(name)s: %(message)s", "%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for item in filter(None, (part.strip() for part in spec.split(","))):
        module, _, level = item.rpartition("=")
        value = _LEVELS.get(level.lower())
        if value is None:
            raise ValueError(f"HYPR_LOG: unknown level {level!r}")
        if module:
            logging.getLogger(module.replace("::", ".")).setLevel(value)
        else:
            root.setLevel(value)
    # The access log of every request is noise at info level.
    logging.getLogger("uvicorn.access").setLevel(
        max(logging.WARNING, root.level) if root.level > logging.DEBUG else logging.DEBUG
    )
