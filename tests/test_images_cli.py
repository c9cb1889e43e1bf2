"""The image commands' rules and their bad inputs, through the CLI of a real hyprd and a real
docker-registry in the daemon's namespace: each refusal is one line, a non-zero exit, and
changes nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from hypr.sandbox import Hyprd
from tests.registry import Registry

Pair = tuple[Hyprd, Registry]


@pytest.fixture
def pair(hyprd: Hyprd, registry_factory: Callable[..., Registry]) -> Pair:
    return hyprd, registry_factory(netns=hyprd.netns)


def refused(daemon: Hyprd, *args: str, code: int = 1) -> str:
    """Run a command that must fail; return its one error line."""
    result = daemon.hypr(*args)
    assert result.returncode == code, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def pulled(daemon: Hyprd) -> list[tuple[str, ...]]:
    return daemon.db_rows("SELECT id FROM images") + daemon.db_rows("SELECT * FROM image_tags")


def test_bad_references_and_missing_images(pair: Pair, busybox_image: Path) -> None:
    daemon, registry = pair
    registry.push(busybox_image, "latest", "tools/busybox")
    registry.push(busybox_image, "armonly", "tools/busybox")
    assert "invalid reference format" in refused(daemon, "pull", "Bad//Name")
    assert "not found" in refused(daemon, "pull", f"{registry.host}/nothing/here:latest")
    assert "not found" in refused(daemon, "pull", f"{registry.host}/tools/busybox:nope")
    assert "linux/amd64" in refused(daemon, "pull", f"{registry.host}/tools/busybox:armonly")
    assert "not found" in refused(daemon, "image", "inspect", "nothing:1")
    assert "not found" in refused(daemon, "rmi", "nothing:1")
    assert pulled(daemon) == []


def test_registry_down(hyprd: Hyprd) -> None:
    line = refused(hyprd, "pull", "127.0.0.1:5999/tools/busybox:latest")
    assert "127.0.0.1:5999" in line
    assert pulled(hyprd) == []


def test_wrong_credentials_and_no_password_in_logs(
    hyprd_factory: Callable[..., Hyprd],
    make_netns: Callable[[], str],
    registry_factory: Callable[..., Registry],
    busybox_image: Path,
    tmp_path: Path,
) -> None:
    ns = make_netns()
    registry = registry_factory(netns=ns, htpasswd={"alice": "s3cret-pass"})
    ref = registry.push(busybox_image, "latest", "private/busybox", creds="alice:s3cret-pass")
    home = tmp_path / "home"
    daemon = hyprd_factory(netns=ns, env={"HYPR_CONFIG": str(home)})
    assert "authentication required" in refused(daemon, "pull", ref)

    daemon.ok("login", "-u", "alice", "--password-stdin", registry.host, input="s3cret-pass\n")
    assert daemon.ok("pull", "-q", ref) == ref + "\n"
    config = json.loads((home / "config.json").read_text())
    config["auths"][registry.host]["auth"] = "YWxpY2U6d3JvbmctcGFzcw=="  # alice:wrong-pass
    (home / "config.json").write_text(json.dumps(config))
    daemon.ok("rmi", ref)
    line = refused(daemon, "pull", ref)
    assert "wrong user name or password" in line and "wrong-pass" not in line
    assert pulled(daemon) == []
    for text in (daemon.log(), registry.log_path.read_text()):
        assert "s3cret-pass" not in text and "wrong-pass" not in text


def test_rmi_rules_tag_and_prune(pair: Pair, busybox_image: Path) -> None:
    daemon, registry = pair
    ref = registry.push(busybox_image, "latest", "tools/busybox")
    daemon.ok("pull", "-q", ref)
    [info] = json.loads(daemon.ok("image", "inspect", ref))

    daemon.ok("tag", ref, "mine/box:v1")
    [tagged] = json.loads(daemon.ok("image", "inspect", "mine/box:v1"))
    assert tagged["Id"] == info["Id"] and sorted(tagged["RepoTags"]) == sorted([ref, "mine/box:v1"])
    assert "several names" in refused(daemon, "rmi", info["Id"][7:19])
    assert daemon.ok("rmi", "mine/box:v1") == "Untagged: mine/box:v1\n"
    assert "built-in" in refused(daemon, "rmi", "busybox")
    assert "built-in" in refused(daemon, "tag", ref, "busybox:latest")
    assert "invalid reference format" in refused(daemon, "tag", ref, "Bad//Name")

    # Nothing dangling: prune keeps it; prune -a removes what no VM uses.
    assert daemon.ok("image", "prune", "-f") == "Total reclaimed space: 0B\n"
    out = daemon.ok("image", "prune", "-a", "-f")
    assert f"untagged: {ref}" in out and f"deleted: {info['Id']}" in out
    assert pulled(daemon) == []
    assert list((daemon.data_dir / "images" / "layers").iterdir()) == []
    assert "busybox " in daemon.ok("images")  # the built-in one stays


def test_rmi_of_an_image_in_use(pair: Pair, busybox_image: Path) -> None:
    daemon, registry = pair
    ref = registry.push(busybox_image, "latest", "tools/busybox")
    daemon.ok("pull", "-q", ref)
    [info] = json.loads(daemon.ok("image", "inspect", ref))
    daemon.ok("run", "-d", "--name", "user", "-u", "0", ref, "sleep 3600")

    assert "in use by VM user" in refused(daemon, "rmi", ref)
    assert json.loads(daemon.ok("image", "inspect", ref))[0]["Id"] == info["Id"]
    assert daemon.ok("image", "prune", "-a", "-f") == "Total reclaimed space: 0B\n"

    assert daemon.ok("rmi", "-f", ref) == f"Untagged: {ref}\n"
    refused(daemon, "image", "inspect", ref)
    assert daemon.inspect("user")["state"] == "running"
    assert daemon.ok("exec", "user", "cat", "/opaque/new") == "upper\n"
    [kept] = json.loads(daemon.ok("image", "inspect", info["Id"]))
    assert kept["RepoTags"] == []
    daemon.ok("stop", "user")
    daemon.ok("start", "user")  # it names its image by id now
    assert daemon.ok("exec", "user", "cat", "/opaque/new") == "upper\n"
