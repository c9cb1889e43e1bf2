"""An image's run-time defaults, read from its OCI / Docker image config JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hypr.images.errors import InvalidManifest


@dataclass(frozen=True)
class ImageConfig:
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    workdir: str = "/"
    user: str = ""
    exposed_ports: list[str] = field(default_factory=list)  # ["80/tcp"]
    labels: dict[str, str] = field(default_factory=dict)
    stop_signal: str = ""
    volumes: list[str] = field(default_factory=list)  # VOLUME targets: anonymous volumes at run
    architecture: str = ""
    os: str = ""
    created: str = ""
    diff_ids: list[str] = field(default_factory=list)  # rootfs.diff_ids, bottom first

    @classmethod
    def from_oci(cls, raw: bytes | str | dict[str, Any]) -> ImageConfig:
        """Parse an image config; a config that is not one raises InvalidManifest."""
        try:
            data = json.loads(raw) if isinstance(raw, bytes | str) else raw
            run = data.get("config") or {}
            rootfs = data.get("rootfs") or {}
            return cls(
                entrypoint=_strings(run.get("Entrypoint")),
                cmd=_strings(run.get("Cmd")),
                env=_strings(run.get("Env")),
                workdir=str(run.get("WorkingDir") or "/"),
                user=str(run.get("User") or ""),
                exposed_ports=sorted(_port(p) for p in (run.get("ExposedPorts") or {})),
                labels={str(k): str(v) for k, v in (run.get("Labels") or {}).items()},
                stop_signal=str(run.get("StopSignal") or ""),
                volumes=sorted(str(v) for v in (run.get("Volumes") or {})),
                architecture=str(data.get("architecture") or ""),
                os=str(data.get("os") or ""),
                created=str(data.get("created") or ""),
                diff_ids=_strings(rootfs.get("diff_ids")),
            )
        except (ValueError, AttributeError, TypeError) as exc:
            raise InvalidManifest(f"the image config is not valid: {exc}") from None

    def to_docker(self) -> dict[str, Any]:
        """The `Config` object of `docker image inspect`."""
        return {
            "User": self.user,
            "ExposedPorts": {port: {} for port in self.exposed_ports} or None,
            "Env": self.env,
            "Cmd": self.cmd or None,
            "WorkingDir": "" if self.workdir == "/" else self.workdir,
            "Entrypoint": self.entrypoint or None,
            "Labels": self.labels or None,
            "StopSignal": self.stop_signal or None,
            "Volumes": {target: {} for target in self.volumes} or None,
        }


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {value!r}")
    return [str(v) for v in value]


def _port(spec: Any) -> str:
    """`80` is `80/tcp`, as Docker reads ExposedPorts."""
    text = str(spec)
    return text if "/" in text else f"{text}/tcp"
