"""hypr: microVMs with Docker-compatible networking."""

__version__ = "0.1.0"
