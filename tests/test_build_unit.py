"""The builder's host-side parts on real files: layers read back from real squashfs files
(tar2sqfs), COPY planning against them, a build VM's upper directory turned into an OCI
layer, the cache's keys, and the build proxy with real sockets on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from hypr.build.cache import BuildCache, CachedStep, chain
from hypr.build.copy import CopyOptions, parse_chmod, parse_chown, plan
from hypr.build.layer import checksum, upper_to_oci, write_entries
from hypr.build.proxy import BuildProxy
from hypr.build.rootview import RootView
from hypr.errors import InvalidArgument


def _entry(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **attrs: object):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data


def squashfs(tmp: Path, name: str, entries: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    tar = tmp / f"{name}.tar"
    with tarfile.open(tar, "w", format=tarfile.PAX_FORMAT) as out:
        for info, data in entries:
            out.addfile(info, io.BytesIO(data) if info.isreg() else None)
    path = tmp / f"{name}.squashfs"
    with tar.open("rb") as source:
        subprocess.run(["tar2sqfs", "-q", "-f", "--no-skip", "-c", "lz4", str(path)],
                       stdin=source, check=True)  # fmt: skip
    return path


@pytest.fixture
def base(tmp_path: Path) -> RootView:
    """A Debian-like root: /bin -> usr/bin, /tmp 1777, passwd and group, then a second
    layer that deletes /usr/bin/gone."""
    passwd = b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n"
    group = b"root:x:0:\nstaff:x:50:\n"
    lower = squashfs(tmp_path, "lower", [
        _entry("usr", tarfile.DIRTYPE), _entry("usr/bin", tarfile.DIRTYPE),
        _entry("usr/bin/gone", data=b"x"), _entry("bin", tarfile.SYMTYPE, linkname="usr/bin"),
        _entry("tmp", tarfile.DIRTYPE, mode=0o1777), _entry("etc", tarfile.DIRTYPE),
        _entry("etc/passwd", data=passwd), _entry("etc/group", data=group),
        _entry("srv", tarfile.DIRTYPE, mode=0o750, uid=5, gid=6),
    ])  # fmt: skip
    upper = squashfs(tmp_path, "upper", [
        _entry("usr", tarfile.DIRTYPE), _entry("usr/bin", tarfile.DIRTYPE),
        _entry("usr/bin/gone", tarfile.CHRTYPE, devmajor=0, devminor=0),
    ])  # fmt: skip
    return RootView([lower, upper])


def test_the_view_merges_layers_and_follows_links_inside_the_root(base: RootView) -> None:
    assert base.lookup("/usr/bin/gone") is None  # deleted by the upper layer's whiteout
    assert base.resolve("/bin/tool") == "/usr/bin/tool"
    assert base.resolve("/bin/../../../etc/passwd") == "/etc/passwd"  # `..` stops at /
    assert base.is_dir("/bin") and not base.is_dir("/etc/passwd")
    assert (base.read("/etc/passwd") or b"").startswith(b"root:x:0:0")
    tmp = base.lookup("/tmp")
    assert tmp is not None and tmp.mode == 0o1777


def test_copy_follows_the_image_links_and_keeps_the_parents_it_writes_into(
    base: RootView, tmp_path: Path
) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "dir" / "sub").mkdir(parents=True)
    (ctx / "tool").write_text("#!/bin/sh\n")
    (ctx / "dir" / "a.txt").write_text("a")
    (ctx / "dir" / "sub" / "b.txt").write_text("b")
    tool = plan(["tool"], "/bin/", ctx, base, "/", CopyOptions())
    assert [e.info.name for e in tool] == ["usr", "usr/bin", "usr/bin/tool"]
    into_tmp = plan(["dir"], "/tmp/x", ctx, base, "/", CopyOptions(chmod=0o700))
    tmp = next(e.info for e in into_tmp if e.info.name == "tmp")
    assert tmp.mode == 0o1777  # the image's /tmp, not a new 0755 one
    names = {e.info.name: e.info for e in into_tmp}
    assert set(names) >= {"tmp/x", "tmp/x/a.txt", "tmp/x/sub/b.txt"}  # contents, not "dir"
    assert names["tmp/x/a.txt"].mode == 0o700
    srv = plan(["tool"], "app", ctx, base, "/srv", CopyOptions(owner=(1000, 1001)))
    by_name = {e.info.name: e.info for e in srv}
    assert (by_name["srv"].mode, by_name["srv"].uid) == (0o750, 5)  # kept as the image has it
    assert (by_name["srv/app"].uid, by_name["srv/app"].gid) == (1000, 1001)


def test_copy_refuses_sources_outside_the_context(base: RootView, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (tmp_path / "secret").write_text("s")
    (ctx / "link").symlink_to(tmp_path / "secret")
    for source, message in [("../secret", "outside the build context"),
                            ("/etc/passwd", "outside the build context"),
                            ("link", "leaves the build context"),
                            ("nothing*", "matches nothing"),
                            ("missing", "no such file")]:  # fmt: skip
        with pytest.raises(InvalidArgument, match=message):
            plan([source], "/x", ctx, base, "/", CopyOptions())
    (ctx / "a").write_text("a")
    (ctx / "b").write_text("b")
    with pytest.raises(InvalidArgument, match="must be a directory"):
        plan(["a", "b"], "/file", ctx, base, "/", CopyOptions())


def test_globs_match_as_go_does_and_chown_names_come_from_the_image(
    base: RootView, tmp_path: Path
) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "d").mkdir(parents=True)
    for name in ("a.txt", "b.txt", "c.md", "d/e.txt"):
        (ctx / name).write_text(name)
    entries = plan(["*.txt"], "/out/", ctx, base, "/", CopyOptions())
    assert sorted(e.info.name for e in entries if e.source) == ["out/a.txt", "out/b.txt"]
    assert parse_chown("app", base) == (1000, 1000)  # a user alone: the group of its number
    assert parse_chown("app:staff", base) == (1000, 50)
    assert parse_chown("7:8", base) == (7, 8)
    with pytest.raises(InvalidArgument, match="no 'nobody'"):
        parse_chown("nobody", base)
    assert parse_chmod("0644") == 0o644
    with pytest.raises(InvalidArgument):
        parse_chmod("u+x")


def test_the_cache_checksum_ignores_times_but_not_contents(base: RootView, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f").write_text("one")
    first = checksum(plan(["f"], "/f", ctx, base, "/", CopyOptions()))
    os.utime(ctx / "f", (1, 1))
    assert checksum(plan(["f"], "/f", ctx, base, "/", CopyOptions())) == first
    (ctx / "f").write_text("two")
    assert checksum(plan(["f"], "/f", ctx, base, "/", CopyOptions())) != first
    out = tmp_path / "layer.tar"
    diff_id = write_entries(plan(["f"], "/f", ctx, base, "/", CopyOptions()), out)
    assert diff_id == "sha256:" + hashlib.sha256(out.read_bytes()).hexdigest()


def test_an_upper_directory_becomes_an_oci_layer(tmp_path: Path) -> None:
    raw = tmp_path / "upper.tar"
    with tarfile.open(raw, "w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in [
            _entry(".", tarfile.DIRTYPE), _entry("./etc", tarfile.DIRTYPE),
            _entry("./etc/hosts", data=b"127.0.0.1 localhost\n"), _entry("./etc/app", data=b"x"),
            _entry("./etc/old", tarfile.CHRTYPE, devmajor=0, devminor=0),
            _entry("./var", tarfile.DIRTYPE), _entry("./var/cache", tarfile.DIRTYPE),
            _entry("./dev-null", tarfile.CHRTYPE, devmajor=1, devminor=3),
        ]:  # fmt: skip
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    out = tmp_path / "layer.tar"
    diff_id = upper_to_oci(raw, out, ["var/cache"])
    assert diff_id == "sha256:" + hashlib.sha256(out.read_bytes()).hexdigest()
    with tarfile.open(out) as tar:
        names = tar.getnames()
        device = tar.getmember("dev-null")
    assert names == ["etc", "etc/app", "etc/.wh.old", "var", "var/cache",
                     "var/cache/.wh..wh..opq", "dev-null"]  # fmt: skip
    assert (device.devmajor, device.devminor) == (1, 3)  # a real device stays one


def test_cache_entries_chain_and_clear(tmp_path: Path) -> None:
    cache = BuildCache(tmp_path / "cache")
    key = chain(chain("image", "sha256:1"), "RUN x")
    assert key != chain(chain("image", "sha256:2"), "RUN x")
    assert cache.get(key) is None
    cache.put(key, CachedStep("2026-12-07T00:00:00Z", "sha256:aa", 10))
    assert cache.get(key) == CachedStep("2026-12-07T00:00:00Z", "sha256:aa", 10)
    assert cache.layers() == {"sha256:aa"}
    assert cache.clear() == 1 and cache.get(key) is None


def test_the_build_proxy_forwards_requests_and_tunnels() -> None:
    async def scenario() -> tuple[bytes, bytes]:
        async def origin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = await reader.readuntil(b"\r\n\r\n")
            body = b"origin saw " + head.split(b"\r\n")[0]
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(origin, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        proxy = BuildProxy("127.0.0.1", 0)
        await proxy.start()
        assert proxy._server is not None
        proxy_port = proxy._server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
        writer.write(f"GET http://127.0.0.1:{port}/path?q=1 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        plain = await reader.read()
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
        writer.write(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n".encode())
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"GET /tunnelled HTTP/1.1\r\n\r\n")
        tunnelled = await reader.read()
        await proxy.close()
        server.close()
        return plain, tunnelled

    plain, tunnelled = asyncio.run(scenario())
    assert plain.startswith(b"HTTP/1.1 200") and plain.endswith(
        b"origin saw GET /path?q=1 HTTP/1.1"
    )
    assert tunnelled.endswith(b"origin saw GET /tunnelled HTTP/1.1")
