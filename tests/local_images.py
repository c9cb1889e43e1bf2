"""Images built in the test from real tar content, and a local image source that serves them
through the puller's registry interface (`RegistryClientLike`), counting the blobs it serves
the way a registry's access log would. The end-to-end pull from a real docker-registry is
round 2's; this source lets the store, layers and rows be tested offline."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import subprocess
import sys
import tarfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypr.images import oci
from hypr.images.content import ContentStore
from hypr.images.errors import ImageNotFound
from hypr.images.puller import Puller, PullEvent
from hypr.images.reference import Reference, parse_reference
from hypr.images.store import ImageStore
from hypr.state.db import Database

Entry = tuple[tarfile.TarInfo, bytes | None]


def entry(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **attrs: Any) -> Entry:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = attrs.pop("mode", 0o755 if kind == tarfile.DIRTYPE else 0o644)
    for key, value in attrs.items():
        setattr(info, key, value)
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        return info, data
    return info, None


@dataclass(frozen=True)
class Layer:
    blob: bytes
    desc: oci.Descriptor
    diff_id: str


def layer(entries: list[Entry], compression: str = "gzip") -> Layer:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    tar_bytes = raw.getvalue()
    if compression == "gzip":
        blob, media_type = gzip.compress(tar_bytes, mtime=0), oci.OCI_LAYER_GZIP
    elif compression == "zstd":
        zstd = subprocess.run(["zstd", "-cq"], input=tar_bytes, capture_output=True, check=True)
        blob, media_type = zstd.stdout, oci.OCI_LAYER_ZSTD
    else:
        blob, media_type = tar_bytes, oci.OCI_LAYER
    return Layer(blob, _desc(media_type, blob), _digest(tar_bytes))


@dataclass(frozen=True)
class Built:
    """A resolved image, shaped as `hypr.images.registry.ResolvedImage`."""

    digest: str
    manifest_media_type: str
    config: bytes
    config_descriptor: oci.Descriptor
    layers: list[oci.Descriptor]


def image(layers: list[Layer], run: dict[str, Any] | None = None) -> tuple[Built, dict[str, bytes]]:
    config = json.dumps(
        {
            "architecture": oci.host_platform().architecture,
            "os": "linux",
            "created": "2026-01-01T00:00:00Z",
            "config": run or {},
            "rootfs": {"type": "layers", "diff_ids": [x.diff_id for x in layers]},
        }
    ).encode()
    config_desc = _desc(oci.OCI_CONFIG, config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": oci.OCI_MANIFEST,
            "config": _json_desc(config_desc),
            "layers": [_json_desc(x.desc) for x in layers],
        }
    ).encode()
    built = Built(
        _digest(manifest), oci.OCI_MANIFEST, config, config_desc, [x.desc for x in layers]
    )
    return built, {x.desc.digest: x.blob for x in layers}


@dataclass
class LocalSource:
    """Images by canonical reference; `served` lists every blob digest streamed."""

    images: dict[str, Built] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    served: list[str] = field(default_factory=list)

    def add(self, ref: str, built: Built, blobs: dict[str, bytes]) -> None:
        self.images[ref] = built
        self.blobs.update(blobs)

    def client(self, auth: object | None) -> LocalClient:
        return LocalClient(self)


class LocalClient:
    def __init__(self, source: LocalSource) -> None:
        self.source = source

    async def resolve(
        self, ref: Reference, platform: oci.Platform, known: Callable[[str], bytes | None]
    ) -> Built:
        try:
            return self.source.images[str(ref)]
        except KeyError:
            raise ImageNotFound(f"{ref.familiar}: not found") from None

    async def stream_blob(self, ref: Reference, desc: oci.Descriptor) -> AsyncIterator[bytes]:
        self.source.served.append(desc.digest)
        data = self.source.blobs[desc.digest]
        for start in range(0, len(data), 65536):
            yield data[start : start + 65536]

    async def aclose(self) -> None:
        return None


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _desc(media_type: str, data: bytes) -> oci.Descriptor:
    return oci.Descriptor(media_type, _digest(data), len(data))


def _json_desc(desc: oci.Descriptor) -> dict[str, Any]:
    return {"mediaType": desc.media_type, "digest": desc.digest, "size": desc.size}


def migrated(root: Path) -> Database:
    root.mkdir(parents=True, exist_ok=True)
    db = Database(root / "hypr.db")
    db.migrate()
    return db


BASE = layer([entry("etc", tarfile.DIRTYPE), entry("etc/os-release", data=b"ID=test\n")])
APP1 = layer(
    [entry("app", tarfile.DIRTYPE), entry("app/one", data=b"1" * 100_000), entry(".wh.etc")]
)
APP2 = layer([entry("app", tarfile.DIRTYPE), entry("app/two", data=b"2" * 50_000)])
RUN = {
    "Entrypoint": ["/app/one"],
    "Cmd": ["--serve"],
    "Env": ["PATH=/usr/bin:/bin", "MODE=test"],
    "WorkingDir": "/app",
    "User": "1000:1000",
    "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
    "Labels": {"org.example": "yes"},
    "StopSignal": "SIGQUIT",
}


class World:
    """A data dir (database, content store, image store) and a source of images."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.source = LocalSource()
        for name, top in (("app1", APP1), ("app2", APP2)):
            built, blobs = image([BASE, top], RUN)
            self.source.add(f"127.0.0.1:5000/{name}:1", built, blobs)
        self.open()

    def open(self) -> None:
        self.db = migrated(self.root)
        self.store = ImageStore(self.root / "images", self.db)
        self.content = ContentStore(self.root / "images")
        self.puller: Puller[object] = Puller(self.store, self.content, self.source.client)

    def pull(self, text: str, events: list[PullEvent] | None = None) -> Any:
        sink = events if events is not None else []
        return asyncio.run(self.puller.pull(parse_reference(text), None, sink.append))


def from_layout(layout: Path, tag: str) -> tuple[Built, dict[str, bytes]]:
    """An image of an OCI image layout (as umoci or skopeo write one), by its tag."""

    def blob(digest: str) -> bytes:
        return (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()

    index = json.loads((layout / "index.json").read_text())
    (entry_,) = [
        m
        for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag
    ]
    manifest = json.loads(blob(entry_["digest"]))
    descs = [
        oci.Descriptor(x["mediaType"], x["digest"], x["size"])
        for x in (manifest["config"], *manifest["layers"])
    ]
    built = Built(entry_["digest"], entry_["mediaType"], blob(descs[0].digest), descs[0], descs[1:])
    return built, {d.digest: blob(d.digest) for d in descs[1:]}


if __name__ == "__main__":
    # `python -m tests.local_images ROOT REF`: one pull in a process of its own, so a crash
    # test can kill it at a fault point (HYPR_FAULT) and look at what it left.
    World(Path(sys.argv[1])).pull(sys.argv[2])
