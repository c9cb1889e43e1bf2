"""Build contexts as pure logic: .dockerignore rules, packing as the docker CLI does, and the
daemon's safe unpacking."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hypr.build.context import pack_context, unpack_context
from hypr.build.dockerignore import IgnoreRules, read_rules
from hypr.errors import InvalidArgument


@pytest.mark.parametrize(
    ("patterns", "path", "ignored"),
    [  # moby/patternmatcher's documented and tested cases
        ("*", "fileutils.go", True),
        ("*.go", "fileutils.go", True),
        ("*.go\n!fileutils.go", "fileutils.go", False),
        ("docs", "docs/README.md", True),
        ("docs/*.md", "docs/README.md", True),
        ("docs/*\n!docs/README.md", "docs/README.md", False),
        ("**", "file", True),
        ("**", "file/", True),
        ("**/", "file", True),
        ("**/", "dir/file", True),
        ("**/file", "file", True),
        ("**/file", "dir/file", True),
        ("**/file", "dir/dir/file", True),
        ("dir/**", "dir/file", True),
        ("dir/**", "dir/dir2/file", True),
        ("**/dir", "dir", True),
        ("**/dir2/*", "dir/dir2/file", True),
        ("**/dir2/**", "dir/dir2/dir3/file", True),
        ("**file", "dir/dir/file", True),
        ("**file", "dir/dirfile", True),
        ("**.txt", "file.txt", True),
        ("**.txt", "x/y/z.txt", True),
        ("dir/**/file", "dir/file", True),
        ("dir/**/file", "dir/dir2/dir3/file", True),
        ("a*/b", "abc/b", True),
        ("a*/b", "a/c/b", False),
        ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False),
        ("ab[c]", "abc", True),
        ("ab[b-d]", "abc", True),
        ("ab[^c]", "abc", False),
        ("a?b", "a☺b", True),
        ("a?b", "a/b", False),
        ("a\\*b", "a*b", True),
        ("a\\*b", "axb", False),
        ("abc.def", "abcdef", False),
        ("abc.def", "abc.def", True),
        ("/abs/path", "abs/path", True),
        ("./a/../b", "b", True),
        ("  spaced  ", "spaced", True),
        ("# comment\n\n  \nreal", "real", True),
        ("# comment", "# comment", False),
        (" #x", "#x", True),
        ("a\n!a/b\na/b/c", "a/b/c", True),
        ("a\n!a/b\na/b/c", "a/b/d", False),
        ("a\n!a/b\na/b/c", "a/x", True),
        ("", "anything", False),
    ],
)
def test_ignore_rules(patterns: str, path: str, ignored: bool) -> None:
    assert IgnoreRules.from_text(patterns).ignored(path) is ignored


@pytest.mark.parametrize("pattern", ["[", "a[]", "[a-", "a\\", "!"])
def test_bad_patterns(pattern: str) -> None:
    with pytest.raises(InvalidArgument):
        IgnoreRules.from_text(pattern)


def test_may_contain_exceptions() -> None:
    rules = IgnoreRules.from_text("vendor\n!vendor/keep/x\n!**/y")
    assert rules.may_contain_exceptions("vendor")
    assert rules.may_contain_exceptions("vendor/keep")
    assert not rules.may_contain_exceptions("other")  # `!**/y` does not count, as in Docker
    assert not IgnoreRules.from_text("vendor").may_contain_exceptions("vendor")


@given(st.lists(st.text(alphabet="abc", min_size=1, max_size=3), min_size=1, max_size=4))
def test_a_directory_pattern_covers_everything_under_it(parts: list[str]) -> None:
    rules = IgnoreRules.from_text(parts[0])
    assert rules.ignored("/".join(parts))
    assert not IgnoreRules.from_text(f"{parts[0]}\n!{parts[0]}").ignored("/".join(parts))


def test_read_rules_prefers_the_dockerfile_specific_file(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("a\n")
    dockerfile = tmp_path / "app.Dockerfile"
    assert read_rules(tmp_path, dockerfile).ignored("a")
    (tmp_path / "app.Dockerfile.dockerignore").write_text("b\n")
    rules = read_rules(tmp_path, dockerfile)
    assert (rules.ignored("a"), rules.ignored("b")) == (False, True)
    assert not read_rules(tmp_path / "none", tmp_path / "none" / "Dockerfile").ignored("a")


# --- packing ---------------------------------------------------------------------------------


def _context(root: Path) -> Path:
    (root / "src" / "deep").mkdir(parents=True)
    (root / "src" / "main.py").write_text("print(1)\n")
    (root / "src" / "deep" / "x.pyc").write_text("junk")
    (root / "logs").mkdir()
    (root / "logs" / "a.log").write_text("log")
    (root / "logs" / "keep.log").write_text("keep")
    (root / "secret.env").write_text("S=1")
    (root / "Dockerfile").write_text("FROM scratch\n")
    (root / ".dockerignore").write_text(
        "**/*.pyc\nlogs\n!logs/keep.log\n*.env\nDockerfile\n.dockerignore\n"
    )
    (root / "link").symlink_to("/etc/passwd")
    (root / "script.sh").write_text("#!/bin/sh\n")
    (root / "script.sh").chmod(0o755)
    os.utime(root / "script.sh", (1_600_000_000.7, 1_600_000_000.7))
    return root


def _members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_pack_applies_dockerignore_like_the_cli(tmp_path: Path) -> None:
    root = _context(tmp_path / "ctx")
    out = io.BytesIO()
    assert pack_context(root, root / "Dockerfile", out) == "Dockerfile"
    members = _members(out.getvalue())
    assert list(members) == [".dockerignore", "Dockerfile", "link", "logs/keep.log",
                             "script.sh", "src", "src/deep", "src/main.py"]  # fmt: skip
    assert members["link"].issym() and members["link"].linkname == "/etc/passwd"
    script = members["script.sh"]
    assert (script.mode, script.mtime, script.uid, script.gid) == (0o755, 1_600_000_000, 0, 0)
    assert (script.uname, script.gname) == ("", "")
    assert members["src"].isdir()


def test_pack_outside_dockerfile(tmp_path: Path) -> None:
    root = tmp_path / "ctx"
    root.mkdir()
    (root / "a").write_text("a")
    (root / ".dockerignore").write_text("b")
    (tmp_path / "Dockerfile.other").write_text("FROM busybox\n")
    out = io.BytesIO()
    name = pack_context(root, tmp_path / "Dockerfile.other", out)
    assert name.startswith(".dockerfile.") and len(name) == len(".dockerfile.") + 20
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        assert tar.extractfile(name).read() == b"FROM busybox\n"  # type: ignore[union-attr]
        ignore = tar.extractfile(".dockerignore").read()  # type: ignore[union-attr]
    assert ignore == f"b\n{name}\n".encode()


def test_pack_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="not a directory"):
        pack_context(tmp_path / "nope", tmp_path / "Dockerfile", io.BytesIO())
    with pytest.raises(InvalidArgument, match="cannot find Dockerfile: "):
        pack_context(tmp_path, tmp_path / "Dockerfile", io.BytesIO())


def test_pack_skips_fifos(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    os.mkfifo(tmp_path / "fifo")
    out = io.BytesIO()
    pack_context(tmp_path, tmp_path / "Dockerfile", out)
    assert list(_members(out.getvalue())) == ["Dockerfile"]


# --- unpacking -------------------------------------------------------------------------------


def _tar(*members: tuple[str, str, bytes | str]) -> io.BytesIO:
    """(name, kind, content or link target) -> a tar stream."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, kind, content in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                assert isinstance(content, bytes)
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE,
                         "chr": tarfile.CHRTYPE}[kind]  # fmt: skip
            info.linkname = str(content)
            tar.addfile(info)
    out.seek(0)
    return out


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([("../x", "file", b"x")], "leaves the context"),
        ([("a/../../x", "file", b"x")], "leaves the context"),
        ([("/abs", "file", b"x")], "absolute path"),
        ([("out", "sym", "/tmp"), ("out/x", "file", b"x")], "under a symbolic link"),
        ([("in", "dir", ""), ("l", "sym", "in"), ("l/x", "file", b"x")], "symbolic link"),
        ([("dev", "chr", "")], "special file"),
        ([("h", "hard", "missing")], "hard link"),
    ],
)
def test_unpack_refuses(
    tmp_path: Path, members: list[tuple[str, str, bytes | str]], message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        unpack_context(_tar(*members), tmp_path)
    assert not (tmp_path.parent / "x").exists()


def test_unpack_refuses_garbage(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="invalid build context"):
        unpack_context(io.BytesIO(b"not a tar at all" * 64), tmp_path)


def test_unpack_links(tmp_path: Path) -> None:
    stream = _tar(("./a", "file", b"A"), ("b", "hard", "a"), ("c", "sym", "../../anywhere"))
    unpack_context(stream, tmp_path)
    assert (tmp_path / "b").read_bytes() == b"A"
    assert (tmp_path / "a").stat().st_ino == (tmp_path / "b").stat().st_ino
    assert os.readlink(tmp_path / "c") == "../../anywhere"


def test_pack_then_unpack_round_trip(tmp_path: Path) -> None:
    root = _context(tmp_path / "ctx")
    (root / "src" / "deep").chmod(0o750)
    out = io.BytesIO()
    pack_context(root, root / "Dockerfile", out)
    dest = tmp_path / "dest"
    dest.mkdir()
    out.seek(0)
    unpack_context(out, dest)
    assert (dest / "src" / "main.py").read_text() == "print(1)\n"
    assert (dest / "logs" / "keep.log").read_text() == "keep"
    assert not (dest / "logs" / "a.log").exists() and not (dest / "secret.env").exists()
    assert os.readlink(dest / "link") == "/etc/passwd"
    assert (dest / "script.sh").stat().st_mode & 0o7777 == 0o755
    assert int((dest / "script.sh").stat().st_mtime) == 1_600_000_000
    assert (dest / "src" / "deep").stat().st_mode & 0o7777 == 0o750
    assert (dest / "Dockerfile").read_text() == "FROM scratch\n"
