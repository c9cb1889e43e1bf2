"""`hypr pull` end to end: a real hyprd pulling from a real docker-registry in its own
namespace (the registry listens on the daemon namespace's loopback)."""

from __future__ import annotations

import io
import json
import shutil
import signal
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hypr.sandbox import BIN, Hyprd, wait_for
from tests.registry import Registry

# A pull takes a while under the test machine's load; never a fixed sleep, only this bound.
PULL_TIMEOUT = 600

Pair = tuple[Hyprd, Registry]


@pytest.fixture
def pair(hyprd: Hyprd, registry_factory: Callable[..., Registry]) -> Pair:
    return hyprd, registry_factory(netns=hyprd.netns)


def layer_files(daemon: Hyprd) -> list[Path]:
    return sorted((daemon.data_dir / "images" / "layers").iterdir())


def blob_files(daemon: Hyprd) -> list[Path]:
    return sorted(p for p in (daemon.data_dir / "images" / "blobs").rglob("*") if p.is_file())


def image_rows(daemon: Hyprd) -> list[tuple[str, ...]]:
    return daemon.db_rows("SELECT id FROM images") + daemon.db_rows("SELECT * FROM image_tags")


def test_pull_lists_and_inspects(pair: Pair, busybox_image: Path) -> None:
    daemon, registry = pair
    ref = registry.push(busybox_image, "latest", "tools/busybox")
    out = daemon.ok("pull", ref)
    lines = out.splitlines()
    assert lines[0] == "latest: Pulling from tools/busybox"
    assert any(line.endswith(": Pull complete") for line in lines)
    assert lines[-2] == f"Status: Downloaded newer image for {ref}"
    assert lines[-1] == ref  # the canonical reference, as docker prints it
    assert not any("Downloading" in line for line in lines)  # not a terminal: no byte counts

    [info] = json.loads(daemon.ok("image", "inspect", ref))
    assert info["RepoTags"] == [ref]
    assert info["RepoDigests"][0].startswith(f"{registry.host}/tools/busybox@sha256:")
    assert info["Architecture"] == "amd64" and info["Os"] == "linux"
    assert info["RootFS"]["Type"] == "layers" and len(info["RootFS"]["Layers"]) == 2
    assert info["Config"]["User"] == "app"
    assert info["Config"]["StopSignal"]
    assert info["Config"]["ExposedPorts"]
    assert info["Size"] > 0

    table = daemon.ok("images").splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    row = next(line for line in table if line.startswith(f"{registry.host}/tools/busybox "))
    cells = row.split()
    assert cells[1] == "latest" and cells[2] == info["Id"][7:19]
    assert row.rstrip().endswith(("B", "kB", "MB")) and " ago " in row
    assert any(line.startswith("busybox ") for line in table)  # the built-in one is still there
    assert info["Id"][7:19] in daemon.ok("images", "-q").split()
    digests = daemon.ok("images", "--digests").splitlines()
    assert "DIGEST" in digests[0]
    assert info["RepoDigests"][0].split("@")[1] in "\n".join(digests)


def test_debian_pull_then_repull_downloads_nothing(pair: Pair, debian_oci: Path) -> None:
    daemon, registry = pair
    ref = registry.push(debian_oci, "latest", "debian")
    assert daemon.hypr("pull", "-q", ref, timeout=PULL_TIMEOUT).stdout == ref + "\n"
    [info] = json.loads(daemon.ok("image", "inspect", ref))
    assert len(info["RootFS"]["Layers"]) == 3
    assert len(layer_files(daemon)) == 3
    served = len(registry.blob_gets())

    again = daemon.ok("pull", ref).splitlines()
    assert f"Status: Image is up to date for {ref}" in again
    assert sum(line.endswith(": Already exists") for line in again) == 3
    assert len(registry.blob_gets()) == served  # nothing downloaded again
    assert blob_files(daemon) == [daemon.data_dir / "images/blobs/sha256" / info["Id"][7:]]


def manifest_of(layout: Path, tag: str) -> dict[str, Any]:
    top = json.loads((layout / "index.json").read_text())
    entry = next(
        m for m in top["manifests"]
        if m["annotations"]["org.opencontainers.image.ref.name"] == tag
    )  # fmt: skip
    return dict(json.loads((layout / "blobs/sha256" / entry["digest"][7:]).read_text()))


def test_shared_base_is_stored_once(pair: Pair, busybox_image: Path, tmp_path: Path) -> None:
    """A second image made of the first plus a layer: the first's layers are neither
    downloaded nor stored again."""
    daemon, registry = pair
    layout = tmp_path / "layout"
    shutil.copytree(busybox_image, layout)
    extra = tmp_path / "extra.tar"
    with tarfile.open(extra, "w") as tar:
        info = tarfile.TarInfo("extra.txt")
        info.size = 6
        tar.addfile(info, io.BytesIO(b"extra\n"))
    subprocess.run(
        ["umoci", "raw", "add-layer", "--image", f"{layout}:latest", str(extra)], check=True
    )
    first = registry.push(busybox_image, "latest", "one/busybox")
    second = registry.push(layout, "latest", "two/busybox")
    daemon.ok("pull", first)
    [a] = json.loads(daemon.ok("image", "inspect", first))
    out = daemon.ok("pull", second)
    [b] = json.loads(daemon.ok("image", "inspect", second))
    assert b["RootFS"]["Layers"][:2] == a["RootFS"]["Layers"] and len(b["RootFS"]["Layers"]) == 3
    assert sum(line.endswith(": Already exists") for line in out.splitlines()) == 2
    assert sum(line.endswith(": Pull complete") for line in out.splitlines()) == 1
    assert len(layer_files(daemon)) == 3
    gets = registry.blob_gets()
    assert len(gets) == len(set(gets))  # no blob served twice
    assert {d["digest"] for d in manifest_of(busybox_image, "latest")["layers"]} <= set(gets)


def test_corrupted_blob_is_refused_and_leaves_nothing(pair: Pair, busybox_image: Path) -> None:
    daemon, registry = pair
    ref = registry.push(busybox_image, "latest", "bad/busybox")
    manifest = manifest_of(busybox_image, "latest")
    blob = registry.blob_path(manifest["layers"][-1]["digest"])
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))

    result = daemon.hypr("pull", ref)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "digest" in result.stderr.lower()
    assert image_rows(daemon) == []
    assert daemon.db_rows("SELECT * FROM layers") == []
    assert layer_files(daemon) == [] and blob_files(daemon) == []


def test_two_concurrent_pulls_share_every_download(pair: Pair, debian_oci: Path) -> None:
    daemon, registry = pair
    ref = registry.push(debian_oci, "latest", "debian")
    pulls = [
        subprocess.Popen(
            [str(BIN / "hypr"), "pull", ref], env=daemon.env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=PULL_TIMEOUT)[0] for p in pulls]
    assert [p.returncode for p in pulls] == [0, 0]
    assert all(out.splitlines()[-1] == ref for out in outs)
    gets = registry.blob_gets()
    assert len(gets) == len(set(gets)) == 4  # three layers and the config, each once
    assert len(layer_files(daemon)) == 3


@pytest.mark.parametrize("point", ["pull.blob_stored", "pull.layer_made", "pull.before_commit"])
def test_hyprd_killed_during_pull_leaves_no_half_image(
    hyprd_factory: Callable[..., Hyprd],
    make_netns: Callable[[], str],
    registry_factory: Callable[..., Registry],
    busybox_image: Path,
    point: str,
) -> None:
    ns = make_netns()
    registry = registry_factory(netns=ns)
    ref = registry.push(busybox_image, "latest", "crash/busybox")
    daemon = hyprd_factory(netns=ns, env={"HYPR_FAULT": point})
    result = daemon.hypr("pull", ref)
    assert result.returncode != 0
    assert daemon.proc is not None
    assert daemon.proc.wait(30) == -signal.SIGKILL
    daemon.proc = None

    daemon.extra_env.pop("HYPR_FAULT")
    daemon.start()
    assert image_rows(daemon) == []
    ingest = daemon.data_dir / "images" / "ingest"
    assert list(ingest.iterdir()) == []
    assert not [p for p in layer_files(daemon) if p.name.endswith(".partial")]
    out = daemon.ok("pull", ref)
    assert out.splitlines()[-1] == ref
    [info] = json.loads(daemon.ok("image", "inspect", ref))
    assert len(layer_files(daemon)) == len(info["RootFS"]["Layers"])


def test_client_gone_mid_pull_the_pull_completes(pair: Pair, debian_oci: Path) -> None:
    """The pull goes on in the daemon when its client goes (documented in docs/images.md);
    nothing of it is visible until it is whole."""
    daemon, registry = pair
    ref = registry.push(debian_oci, "latest", "debian")
    client = subprocess.Popen(
        [str(BIN / "hypr"), "pull", ref], env=daemon.env, stdout=subprocess.PIPE, text=True
    )
    assert client.stdout is not None
    assert client.stdout.readline().startswith("latest: Pulling from")
    client.kill()
    client.wait()

    def pulled() -> bool:
        rows = daemon.db_rows("SELECT image_id FROM image_tags")
        assert rows or not daemon.db_rows("SELECT id FROM images")  # never an untagged half
        return bool(rows)

    wait_for(pulled, timeout=PULL_TIMEOUT)
    [info] = json.loads(daemon.ok("image", "inspect", ref))
    assert len(layer_files(daemon)) == len(info["RootFS"]["Layers"]) == 3
