"""Layer blobs become squashfs files that keep every file's metadata and carry OCI whiteouts
as overlayfs's own, read back with squashfs-tools-ng's sqfs2tar and, stacked, through a
real overlayfs mount in a private mount namespace."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest

from hypr.images import layers
from hypr.images.errors import DigestMismatch, InvalidManifest
from tests.local_images import Layer, World, entry, from_layout, layer

DIR, REG, SYM, LNK, CHR, FIFO = (
    tarfile.DIRTYPE,
    tarfile.REGTYPE,
    tarfile.SYMTYPE,
    tarfile.LNKTYPE,
    tarfile.CHRTYPE,
    tarfile.FIFOTYPE,
)


def make(tmp_path: Path, built: Layer, compression: str = "gzip", name: str = "l") -> Path:
    blob = tmp_path / f"{name}.blob"
    blob.write_bytes(built.blob)
    return layers.convert(blob, compression, built.diff_id, tmp_path / f"{name}.squashfs")


def read_back(squashfs: Path) -> dict[str, tarfile.TarInfo]:
    tar = subprocess.run(["sqfs2tar", str(squashfs)], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        return {m.name.removeprefix("./").rstrip("/"): m for m in archive}


@pytest.mark.parametrize("compression", ["gzip", "zstd", "tar"])
def test_file_metadata_survives(tmp_path: Path, compression: str) -> None:
    built = layer(
        [
            entry("etc", DIR, mode=0o755),
            entry("etc/passwd", REG, b"root:x:0:0::/root:/bin/sh\n"),
            entry("bin", DIR, mode=0o750, uid=0, gid=10),
            entry("bin/tool", REG, b"#!/bin/sh\n", mode=0o4755, uid=4242, gid=4343),
            entry("bin/link", SYM, linkname="tool", mode=0o777),
            entry("bin/hard", LNK, linkname="bin/tool"),
            entry("dev", DIR),
            entry("dev/null", CHR, mode=0o666, devmajor=1, devminor=3),
            entry("run", DIR, mode=0o1777),
            entry("run/fifo", FIFO, mode=0o600, uid=7, gid=8),
            entry("noted", REG, b"x", pax_headers={"SCHILY.xattr.user.note": "kept"}),
        ],
        compression,
    )
    got = read_back(make(tmp_path, built, compression))
    tool = got["bin/tool"]
    assert (tool.mode, tool.uid, tool.gid) == (0o4755, 4242, 4343)
    assert (got["bin"].mode, got["bin"].gid) == (0o750, 10)
    assert got["bin/link"].issym() and got["bin/link"].linkname == "tool"
    # One inode, two names: sqfs2tar writes whichever name it meets second as the link.
    links = {
        n: got[n].linkname.removeprefix("./") for n in ("bin/hard", "bin/tool") if got[n].islnk()
    }
    assert links in ({"bin/hard": "bin/tool"}, {"bin/tool": "bin/hard"})
    null = got["dev/null"]
    assert null.ischr() and (null.devmajor, null.devminor, null.mode) == (1, 3, 0o666)
    assert got["run"].mode == 0o1777
    assert got["run/fifo"].isfifo() and (got["run/fifo"].uid, got["run/fifo"].gid) == (7, 8)
    assert got["noted"].pax_headers.get("SCHILY.xattr.user.note") == "kept"


def test_oci_whiteouts_become_overlayfs_whiteouts(tmp_path: Path) -> None:
    upper = layer(
        [
            entry(".wh.gone", REG),
            entry("a", DIR),
            entry("a/.wh.old", REG),
            entry("opq/.wh..wh..opq", REG),  # before its directory's entry
            entry("opq", DIR, mode=0o710),
            entry("opq/new", REG, b"new"),
            entry("bare/.wh..wh..opq", REG),  # a directory with no entry of its own
        ]
    )
    got = read_back(make(tmp_path, upper))
    for name in ("gone", "a/old"):
        assert got[name].ischr() and (got[name].devmajor, got[name].devminor) == (0, 0)
    assert not any(".wh." in name for name in got)
    opaque = "SCHILY.xattr.trusted.overlay.opaque"
    assert got["opq"].pax_headers.get(opaque) == "y" and got["opq"].mode == 0o710
    assert got["bare"].isdir() and got["bare"].pax_headers.get(opaque) == "y"
    assert opaque not in got["a"].pax_headers


def test_stacked_layers_honour_whiteouts_in_overlayfs(tmp_path: Path) -> None:
    lower = layer(
        [
            entry("a", DIR),
            entry("a/keep", REG, b"kept"),
            entry("a/old", REG, b"old"),
            entry("gone", REG, b"gone"),
            entry("opq", DIR),
            entry("opq/hidden", REG, b"hidden"),
        ]
    )
    upper = layer(
        [
            entry(".wh.gone", REG),
            entry("a/.wh.old", REG),
            entry("opq", DIR),
            entry("opq/.wh..wh..opq", REG),
            entry("opq/new", REG, b"new"),
        ]
    )
    bottom, top = make(tmp_path, lower, name="lower"), make(tmp_path, upper, name="upper")
    assert overlay_listing(tmp_path, [bottom, top]) == ["a", "a/keep", "opq", "opq/new"]


def test_an_image_made_by_umoci_stacks_as_its_layers_say(tmp_path: Path) -> None:
    """umoci writes the whiteouts itself when a repacked bundle lost files."""
    layout, bundle = tmp_path / "oci", tmp_path / "bundle"

    def umoci(*args: str) -> None:
        subprocess.run(["umoci", *args], check=True, capture_output=True)

    umoci("init", "--layout", str(layout))
    umoci("new", "--image", f"{layout}:t")
    umoci("unpack", "--rootless", "--image", f"{layout}:t", str(bundle))
    rootfs = bundle / "rootfs"
    (rootfs / "d" / "sub").mkdir(parents=True)
    (rootfs / "d" / "sub" / "a").write_text("1")
    (rootfs / "gone").write_text("x")
    (rootfs / "kept").write_text("k")
    umoci("repack", "--image", f"{layout}:t", str(bundle))
    shutil.rmtree(bundle)  # a bundle repacks onto the image it was unpacked from
    umoci("unpack", "--rootless", "--image", f"{layout}:t", str(bundle))
    (rootfs / "gone").unlink()
    shutil.rmtree(rootfs / "d" / "sub")
    (rootfs / "d" / "new").write_text("2")
    umoci("repack", "--image", f"{layout}:t", str(bundle))
    world = World(tmp_path / "data")
    world.source.add("docker.io/library/t:latest", *from_layout(layout, "t"))
    pulled = world.pull("t")
    assert len(pulled.layers) == 2
    assert overlay_listing(tmp_path, list(pulled.layers)) == ["d", "d/new", "kept"]


def overlay_listing(work: Path, stack: list[Path]) -> list[str]:
    """What a guest would see: the squashfs layers (bottom first) mounted read-only and
    stacked by overlayfs with a writable upper, in a private mount namespace."""
    lowers = []
    mounts = ""
    for i, squashfs in enumerate(stack):
        lowers.insert(0, f"m/{i}")
        mounts += f"mkdir -p m/{i}; mount -t squashfs -o ro,loop {squashfs} m/{i}\n"
    options = f"lowerdir={':'.join(lowers)},upperdir=rw/up,workdir=rw/work"
    script = f"""
        set -e
        cd {work}
        mkdir -p rw/up rw/work merged
        {mounts}
        mount -t overlay overlay -o {options} merged
        cd merged
        find . -mindepth 1 | sort
    """
    listing = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [name.removeprefix("./") for name in listing]


def test_diff_id_mismatch_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    built = layer([entry("file", REG, b"content")])
    blob = tmp_path / "l.blob"
    blob.write_bytes(built.blob)
    wrong = "sha256:" + "0" * 64
    out = tmp_path / "out" / "x.squashfs"
    out.parent.mkdir()
    with pytest.raises(DigestMismatch, match="the image config says"):
        layers.convert(blob, "gzip", wrong, out)
    assert list(out.parent.iterdir()) == []


def test_a_blob_that_is_not_a_tar_is_refused(tmp_path: Path) -> None:
    blob = tmp_path / "l.blob"
    blob.write_bytes(b"not a tar at all" * 100)
    out = tmp_path / "out" / "x.squashfs"
    out.parent.mkdir()
    with pytest.raises(InvalidManifest):
        layers.convert(blob, "tar", "sha256:" + "0" * 64, out)
    assert list(out.parent.iterdir()) == []


def test_a_full_disk_while_making_a_layer_is_one_clear_line(tmp_path: Path) -> None:
    built = layer([entry("big", REG, os.urandom(2 << 20))])
    blob = tmp_path / "l.blob"
    blob.write_bytes(built.blob)
    small = tmp_path / "small"
    small.mkdir()
    convert = (
        "import sys; from pathlib import Path; from hypr.errors import HyprError;"
        "from hypr.images import layers\n"
        "try: layers.convert(Path(sys.argv[1]), 'gzip', sys.argv[2], Path(sys.argv[3]))\n"
        "except HyprError as e: print(type(e).__name__, e.message); sys.exit(1)"
    )
    # A 512 KiB tmpfs in a mount namespace of this test's own: a real file system that fills.
    script = (
        f'mount -t tmpfs -o size=512k tmpfs {small} && "$0" -c "$1" "$2" "$3" "$4"; rc=$?; '
        f"ls -A {small}; exit $rc"
    )
    result = subprocess.run(
        [
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            sys.executable,
            convert,
            str(blob),
            built.diff_id,
            str(small / "x.squashfs"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("DiskFull no space left on the device") and len(lines) == 1


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_long_names_and_links_pass_through_block_by_block(tmp_path: Path, fmt: int) -> None:
    """Names past 100 characters (pax records, GNU long names, ustar prefixes), hard links
    to them, and a hard link to a lower layer's file (a symlink to it, the same content)."""
    deep = "d" * 60 + "/" + "e" * 60
    long = f"{deep}/{'f' * 90}"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=fmt) as tar:
        for info, data in [
            entry("d" * 60, DIR),
            entry(deep, DIR, mode=0o700),
            entry(long, REG, b"long\n", uid=3, gid=4),
            *([entry("short-link", LNK, linkname=long)] if fmt != tarfile.USTAR_FORMAT else []),
            entry(f"{deep}/.wh.gone", REG, b""),
            entry("lower-link", LNK, linkname="etc/from-below"),
        ]:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    blob = tmp_path / "l.blob"
    blob.write_bytes(raw.getvalue())
    diff_id = "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()
    got = read_back(layers.convert(blob, "tar", diff_id, tmp_path / "l.squashfs"))
    assert (got[long].uid, got[long].gid) == (3, 4) and got[deep].mode == 0o700
    if fmt != tarfile.USTAR_FORMAT:  # ustar cannot hold a link name this long
        names = (long, "short-link")
        pair = {n: got[n].linkname.removeprefix("./") for n in names if got[n].islnk()}
        assert pair in ({"short-link": long}, {long: "short-link"})
    assert got[f"{deep}/gone"].ischr() and got[f"{deep}/gone"].devmajor == 0
    assert got["lower-link"].issym() and got["lower-link"].linkname == "/etc/from-below"


def test_a_layer_converted_while_it_downloads_is_the_same(tmp_path: Path) -> None:
    built = layer([entry("etc", DIR), entry("etc/a", REG, b"a\n" * 70000)])
    feed = layers.Feed(depth=2)
    out = tmp_path / "s.squashfs"

    thread = threading.Thread(target=layers.convert_stream, args=(feed, "gzip", built.diff_id, out))
    thread.start()
    for i in range(0, len(built.blob), 1000):
        assert feed.offer(built.blob[i : i + 1000])
    feed.offer(None)
    thread.join()
    assert read_back(out)["etc/a"].size == 140000
    assert read_back(out).keys() == read_back(make(tmp_path, built)).keys()
