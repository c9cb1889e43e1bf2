"""Test images built offline from real content, cached outside the repo.

busybox_layers: a two-layer image from busybox-static with whiteouts, an opaque dir, a
symlink, a hard link, a device node, an xattr, odd modes and owners, and a full image
config; plus the same layers plain and zstd, an arm64 variant and indexes. debian_image:
Debian bookworm (mmdebstrap essential + python3-minimal) in three layers. Made with umoci
into OCI layouts in /var/cache/hypr-tests/ (HYPR_TEST_CACHE), keyed by a hash of the recipe.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import inspect
import io
import json
import os
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from hypr.sandbox import sh

CACHE = Path(os.environ.get("HYPR_TEST_CACHE", "/var/cache/hypr-tests"))
BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "ls", "cat", "id", "echo", "env", "pwd", "sleep", "stat", "test", "true")


def cached(name: str, recipe: str, build: Callable[[Path], None]) -> Path:
    """The OCI layout built by `build(dir)`, made once per recipe and kept in CACHE."""
    key = hashlib.sha256(recipe.encode()).hexdigest()[:16]
    final = CACHE / f"{name}-{key}"
    if final.is_dir():
        return final
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=CACHE) as work:
        made = Path(work) / "out"
        build(made)
        with contextlib.suppress(OSError):  # another run built it meanwhile: keep theirs
            made.rename(final)
    return final


def _entry(
    name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, uid: int = 0, gid: int = 0
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, uid, gid, 1_700_000_000
    return info


def _layer(path: Path, entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _dir(name: str, mode: int = 0o755) -> tuple[tarfile.TarInfo, None]:
    return _entry(name, tarfile.DIRTYPE, mode), None


def _file(
    name: str, data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0
) -> tuple[tarfile.TarInfo, bytes]:
    return _entry(name, mode=mode, uid=uid, gid=gid), data


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    info = _entry(name, kind, 0o777 if kind == tarfile.SYMTYPE else 0o644)
    info.linkname = target
    return info, None


def _umoci(*args: str) -> None:
    sh("umoci", *args)


def _add_index(layout: Path, tag: str, platforms: dict[str, str]) -> None:
    """Tag an OCI image index in `layout` whose entries are the manifests of tags by arch."""
    top = json.loads((layout / "index.json").read_text())
    by_tag = {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in top["manifests"]}
    entries = [
        {
            **{k: v for k, v in by_tag[t].items() if k != "annotations"},
            "platform": {"os": "linux", "architecture": arch},
        }
        for arch, t in platforms.items()
    ]
    blob = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": entries,
        }
    ).encode()
    digest = hashlib.sha256(blob).hexdigest()
    (layout / "blobs/sha256" / digest).write_bytes(blob)
    top["manifests"].append(
        {
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": f"sha256:{digest}",
            "size": len(blob),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }
    )
    (layout / "index.json").write_text(json.dumps(top))


BUSYBOX_CONFIG = {
    "--config.entrypoint": ["/bin/sh", "-c"],
    "--config.cmd": ["echo hello from busybox_layers"],
    "--config.env": ["PATH=/bin", "GREETING=hello"],
    "--config.workingdir": ["/data"],
    "--config.user": ["app"],
    "--config.exposedports": ["8080/tcp", "53/udp"],
    "--config.label": ["org.hypr.test=busybox_layers"],
    "--config.stopsignal": ["SIGQUIT"],
}


def _recompress(layout: Path, source: str, tag: str, compression: str) -> None:
    """Tag a copy of image `source` whose layers are plain tar (`tar`) or zstd (`zstd`)."""
    blobs = layout / "blobs/sha256"
    top = json.loads((layout / "index.json").read_text())
    entry = next(
        m
        for m in top["manifests"]
        if m["annotations"]["org.opencontainers.image.ref.name"] == source
    )
    manifest = json.loads((blobs / entry["digest"].removeprefix("sha256:")).read_bytes())
    suffix = {"tar": "", "zstd": "+zstd"}[compression]
    for layer in manifest["layers"]:
        raw = gzip.decompress((blobs / layer["digest"].removeprefix("sha256:")).read_bytes())
        if compression == "zstd":
            raw = subprocess.run(
                ["zstd", "-q", "-c"], input=raw, capture_output=True, check=True
            ).stdout
        digest = hashlib.sha256(raw).hexdigest()
        (blobs / digest).write_bytes(raw)
        layer.update(
            mediaType=f"application/vnd.oci.image.layer.v1.tar{suffix}",
            digest=f"sha256:{digest}",
            size=len(raw),
        )
    data = json.dumps(manifest).encode()
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    top["manifests"].append(
        {
            "mediaType": entry["mediaType"],
            "digest": f"sha256:{digest}",
            "size": len(data),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }
    )
    (layout / "index.json").write_text(json.dumps(top))


def _build_busybox_layers(layout: Path) -> None:
    """Tags: `latest` (amd64, 2 gzip layers), `tar` and `zstd` (the same layers plain and
    zstd-compressed), `arm64` (one layer, arm64), `multi` (index of amd64 and arm64),
    `armonly` (index with only linux/arm64)."""
    work = layout.with_name("work")
    work.mkdir()
    passwd = b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n"
    group = b"root:x:0:\napp:x:1000:\nstaff:x:50:app\n"
    base = _layer(
        work / "base.tar",
        [
            _dir("bin"),
            _dir("etc"),
            _dir("tmp", 0o1777),
            _dir("data"),
            _dir("home"),
            _dir("home/app"),
            _dir("opaque"),
            _dir("dev"),
            _file("bin/busybox", BUSYBOX.read_bytes(), 0o755),
            *[_link(f"bin/{a}", "busybox") for a in APPLETS],
            _file("etc/passwd", passwd),
            _file("etc/group", group),
            _file("data/gone.txt", b"deleted by the upper layer\n"),
            _file("data/file", b"hard linked\n"),
            _file("opaque/old", b"hidden by an opaque dir\n"),
        ],
    )
    xattr = _entry("data/xattr")
    xattr.pax_headers = {"SCHILY.xattr.user.hypr": "yes"}
    device = _entry("dev/null0", tarfile.CHRTYPE, 0o666)
    device.devmajor, device.devminor = 1, 3
    top = _layer(
        work / "top.tar",
        [
            _file("data/.wh.gone.txt", b""),
            _dir("opaque"),
            _file("opaque/.wh..wh..opq", b""),
            _file("opaque/new", b"upper\n"),
            _file("etc/motd", b"two layers\n"),
            _link("data/motd", "/etc/motd"),
            _link("data/hard", "data/file", tarfile.LNKTYPE),
            (device, None),
            (xattr, b"with an xattr\n"),
            _file("data/suid", b"#!/bin/sh\n", 0o4755, 1000, 1000),
            _file("data/odd", b"odd owner\n", 0o640, 123, 456),
        ],
    )
    _umoci("init", "--layout", str(layout))
    _umoci("new", "--image", f"{layout}:latest")
    _umoci("raw", "add-layer", "--image", f"{layout}:latest", str(base))
    _umoci("raw", "add-layer", "--image", f"{layout}:latest", str(top))
    flags = [f"{flag}={value}" for flag, values in BUSYBOX_CONFIG.items() for value in values]
    _umoci(
        "config", "--image", f"{layout}:latest", "--os", "linux", "--architecture", "amd64", *flags
    )
    _recompress(layout, "latest", "tar", "tar")
    _recompress(layout, "latest", "zstd", "zstd")
    _umoci("new", "--image", f"{layout}:arm64")
    _umoci("raw", "add-layer", "--image", f"{layout}:arm64", str(base))
    _umoci("config", "--image", f"{layout}:arm64", "--os", "linux", "--architecture", "arm64")
    _add_index(layout, "multi", {"amd64": "latest", "arm64": "arm64"})
    _add_index(layout, "armonly", {"arm64": "arm64"})


def busybox_layers() -> Path:
    """The cached OCI layout of the small busybox test image (see _build_busybox_layers)."""
    source = inspect.getsource(_build_busybox_layers) + repr(BUSYBOX_CONFIG) + repr(APPLETS)
    recipe = source + hashlib.sha256(BUSYBOX.read_bytes()).hexdigest()
    return cached("busybox_layers", recipe, _build_busybox_layers)


DEBIAN_SUITE = "bookworm"
DEBIAN_INCLUDE = "python3-minimal"
_PYTHON_PATHS = (
    "usr/lib/python3",
    "usr/bin/python3",
    "usr/share/doc/python3",
    "usr/share/doc/libpython3",
    "usr/lib/x86_64-linux-gnu/libpython3",
)


def _build_debian_rootfs(out: Path) -> None:
    out.mkdir()
    sh(
        "mmdebstrap",
        "--quiet",
        "--variant=essential",
        f"--include={DEBIAN_INCLUDE}",
        DEBIAN_SUITE,
        str(out / "rootfs.tar"),
    )


def debian_rootfs() -> Path:
    """A Debian rootfs tar (mmdebstrap essential + python3-minimal), cached; part G boots
    it directly, `debian_image` layers it."""
    recipe = f"mmdebstrap essential {DEBIAN_SUITE} {DEBIAN_INCLUDE}"
    return cached("debian-rootfs", recipe, _build_debian_rootfs) / "rootfs.tar"


def _split_debian(rootfs: Path, work: Path) -> list[Path]:
    """The rootfs as two layers: the base system, then Python (hard links stay with their
    target's layer)."""
    paths = [work / "system.tar", work / "python.tar"]
    where: dict[str, int] = {}
    with tarfile.open(rootfs) as src, contextlib.ExitStack() as stack:
        outs = [stack.enter_context(tarfile.open(p, "w", format=tarfile.PAX_FORMAT)) for p in paths]
        for member in src:
            name = member.name.removeprefix("./")
            if member.islnk():
                layer = where.get(member.linkname.removeprefix("./"), 0)
            else:
                layer = int(name.startswith(_PYTHON_PATHS) and not member.isdir())
            where[name] = layer
            outs[layer].addfile(member, src.extractfile(member) if member.isreg() else None)
    return paths


def _build_debian(layout: Path) -> None:
    work = layout.with_name("work")
    work.mkdir()
    app = _layer(
        work / "app.tar",
        [
            _dir("app"),
            _file("app/hello.py", b"print('hello from debian')\n"),
            _file("etc/.wh.motd", b""),
        ],
    )
    _umoci("init", "--layout", str(layout))
    _umoci("new", "--image", f"{layout}:latest")
    for tar in [*_split_debian(debian_rootfs(), work), app]:
        _umoci("raw", "add-layer", "--image", f"{layout}:latest", str(tar))
    _umoci(
        "config",
        "--image",
        f"{layout}:latest",
        "--os",
        "linux",
        "--architecture",
        "amd64",
        "--config.cmd=python3",
        "--config.cmd=/app/hello.py",
        "--config.workingdir=/app",
        "--config.env=PATH=/usr/local/bin:/usr/bin:/bin",
        "--config.env=LANG=C.UTF-8",
    )


def debian_image() -> Path:
    """The cached OCI layout (tag `latest`) of Debian in three layers: system, Python, app."""
    recipe = inspect.getsource(_build_debian) + inspect.getsource(_split_debian)
    recipe += f"{DEBIAN_SUITE} {DEBIAN_INCLUDE} {_PYTHON_PATHS}"
    return cached("debian", recipe, _build_debian)


SSH_INCLUDE = "dropbear-bin"


def _build_debian_ssh(layout: Path) -> None:
    """Debian (essential) with dropbear, in one layer: an SSH server for user data's keys."""
    work = layout.with_name("work")
    work.mkdir()
    sh("mmdebstrap", "--quiet", "--variant=essential", f"--include={SSH_INCLUDE}",
       DEBIAN_SUITE, str(work / "rootfs.tar"))  # fmt: skip
    _umoci("init", "--layout", str(layout))
    _umoci("new", "--image", f"{layout}:latest")
    _umoci("raw", "add-layer", "--image", f"{layout}:latest", str(work / "rootfs.tar"))
    _umoci("config", "--image", f"{layout}:latest", "--os", "linux", "--architecture", "amd64",
           "--config.env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "--config.cmd=sh", "--config.cmd=-c",
           "--config.cmd=mkdir -p /etc/dropbear && exec dropbear -F -E -R -p 22")  # fmt: skip


def debian_ssh_image() -> Path:
    """The cached OCI layout (tag `latest`) of Debian with dropbear, whose default command
    serves SSH on port 22 (host keys made at the first connection)."""
    recipe = inspect.getsource(_build_debian_ssh) + f"{DEBIAN_SUITE} {SSH_INCLUDE}"
    return cached("debian-ssh", recipe, _build_debian_ssh)
