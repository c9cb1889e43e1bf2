"""The content store, the image rows and the puller, with images built in the test from real
tar layers (tests/local_images.py) and read back from the files and the database."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hypr.errors import InvalidArgument, NotFound
from hypr.images import oci
from hypr.images.content import ContentStore, DiskFull
from hypr.images.errors import DigestMismatch
from hypr.images.puller import PullEvent
from hypr.images.reference import parse_reference
from hypr.images.store import ImageStore
from hypr.sandbox import Hyprd
from tests.local_images import APP1, APP2, BASE, World, image, migrated

DATA = os.urandom(300_000)
DESC = oci.Descriptor(oci.OCI_LAYER, "sha256:" + hashlib.sha256(DATA).hexdigest(), len(DATA))


async def chunks(data: bytes, served: list[int] | None = None) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 50_000):
        if served is not None:
            served.append(start)
        await asyncio.sleep(0)
        yield data[start : start + 50_000]


def leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_a_blob_that_does_not_match_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    content = ContentStore(tmp_path)
    bad = bytearray(DATA)
    bad[1000] ^= 0xFF
    with pytest.raises(DigestMismatch, match="does not match its digest"):
        asyncio.run(content.ingest(DESC, chunks(bytes(bad))))
    with pytest.raises(DigestMismatch, match="larger than"):
        asyncio.run(content.ingest(DESC, chunks(DATA + b"x")))
    assert not content.has(DESC.digest) and leftovers(tmp_path) == []


def test_concurrent_ingests_of_one_digest_download_once(tmp_path: Path) -> None:
    content = ContentStore(tmp_path)
    first: list[int] = []
    second: list[int] = []

    async def both() -> list[Path]:
        return await asyncio.gather(
            content.ingest(DESC, chunks(DATA, first)), content.ingest(DESC, chunks(DATA, second))
        )

    paths = asyncio.run(both())
    assert paths[0] == paths[1] and paths[0].read_bytes() == DATA
    assert len(first) == 6 and second == []
    assert paths[0].stat().st_mode & 0o777 == 0o600
    assert leftovers(tmp_path) == [f"blobs/sha256/{DESC.digest[7:]}"]


def test_a_failed_download_lets_the_waiting_one_try_its_own(tmp_path: Path) -> None:
    content = ContentStore(tmp_path)

    async def both() -> list[Any]:
        return await asyncio.gather(
            content.ingest(DESC, chunks(b"x" * len(DATA))),
            content.ingest(DESC, chunks(DATA)),
            return_exceptions=True,
        )

    bad, good = asyncio.run(both())
    assert isinstance(bad, DigestMismatch) and isinstance(good, Path)
    assert good.read_bytes() == DATA


def test_partials_are_cleaned_at_start(tmp_path: Path) -> None:
    images = tmp_path / "images"
    content = ContentStore(images)
    store = ImageStore(images, migrated(tmp_path))
    (content.ingest_dir / f"{DESC.digest[7:]}.partial").write_bytes(b"half")
    (store.layers_dir / "abc.squashfs.partial").write_bytes(b"half")
    ContentStore(images).clean_partials()
    store.clean_partials()
    assert leftovers(images) == []


def test_hyprd_removes_partials_when_it_starts(hyprd: Hyprd) -> None:
    hyprd.stop()
    partials = [
        hyprd.data_dir / "images" / "ingest" / f"{DESC.digest[7:]}.partial",
        hyprd.data_dir / "images" / "layers" / "abc.squashfs.partial",
    ]
    for partial in partials:
        partial.write_bytes(b"half written by a killed pull")
    hyprd.start()
    assert not any(p.exists() for p in partials)
    assert "busybox" in hyprd.ok("images")


def test_a_full_disk_is_one_clear_line_and_leaves_nothing(tmp_path: Path) -> None:
    content = ContentStore(tmp_path)
    # The kernel's /dev/full answers every write with ENOSPC, as a full file system does.
    (content.ingest_dir / f"{DESC.digest[7:]}.partial").symlink_to("/dev/full")
    with pytest.raises(DiskFull, match="no space left") as caught:
        asyncio.run(content.ingest(DESC, chunks(DATA)))
    assert "\n" not in caught.value.message and caught.value.status == 507
    assert list(tmp_path.rglob("*.partial")) == [] and not content.has(DESC.digest)


def statuses(events: list[PullEvent], short: str) -> list[str]:
    return [e["status"] for e in events if e.get("id") == short and e["status"] != "Downloading"]


def test_pull_records_the_image_with_its_config(tmp_path: Path) -> None:
    world = World(tmp_path)
    events: list[PullEvent] = []
    pulled = world.pull("127.0.0.1:5000/app1:1", events)
    base = BASE.desc.digest[7:19]
    assert statuses(events, base) == [
        "Pulling fs layer",
        "Download complete",
        "Extracting",
        "Pull complete",
    ]
    assert events[-1]["status"] == "Status: Downloaded newer image for 127.0.0.1:5000/app1:1"
    assert any(e["status"] == "Downloading" and e["progressDetail"]["total"] > 0 for e in events)
    world.db.close()
    world.open()  # the rows are what the store knows after a restart
    got = world.store.get("127.0.0.1:5000/app1:1")
    assert (
        got.id == pulled.id == world.source.images["127.0.0.1:5000/app1:1"].config_descriptor.digest
    )
    assert got.repo_tags == ["127.0.0.1:5000/app1:1"]
    assert got.repo_digests == [
        f"127.0.0.1:5000/app1@{world.source.images['127.0.0.1:5000/app1:1'].digest}"
    ]
    assert [p.name for p in got.layers] == [
        f"{BASE.diff_id[7:]}.squashfs",
        f"{APP1.diff_id[7:]}.squashfs",
    ]
    assert all(p.is_file() for p in got.layers)
    assert got.size == sum(p.stat().st_size for p in got.layers)
    config = got.config
    assert (config.entrypoint, config.cmd, config.workdir, config.user) == (
        ["/app/one"],
        ["--serve"],
        "/app",
        "1000:1000",
    )
    assert config.env == ["PATH=/usr/bin:/bin", "MODE=test"]
    assert config.exposed_ports == ["53/udp", "80/tcp"] and config.stop_signal == "SIGQUIT"
    assert config.labels == {"org.example": "yes"}
    assert world.store.get(got.id[7:19]).id == got.id
    assert world.store.get(got.id).id == got.id


def test_a_shared_base_layer_is_downloaded_and_stored_once(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.pull("127.0.0.1:5000/app1:1")
    events: list[PullEvent] = []
    world.pull("127.0.0.1:5000/app2:1", events)
    assert statuses(events, BASE.desc.digest[7:19]) == ["Already exists"]
    assert world.source.served.count(BASE.desc.digest) == 1
    assert sorted(p.name for p in world.store.layers_dir.iterdir()) == sorted(
        f"{x.diff_id[7:]}.squashfs" for x in (BASE, APP1, APP2)
    )
    # Layer blobs are not kept once made into squashfs; the two configs are.
    blobs = sorted(p.name for p in world.content.blobs.iterdir())
    configs = [
        world.source.images[f"127.0.0.1:5000/{n}:1"].config_descriptor.digest
        for n in ("app1", "app2")
    ]
    assert blobs == sorted(c[7:] for c in configs)
    rows = world.db.conn.execute("SELECT count(*) FROM layers").fetchone()[0]
    assert rows == 3


def test_removing_an_image_keeps_the_layers_another_one_uses(tmp_path: Path) -> None:
    world = World(tmp_path)
    app1 = world.pull("127.0.0.1:5000/app1:1")
    world.pull("127.0.0.1:5000/app2:1")
    assert world.store.remove(app1.id) == [APP1.diff_id]
    assert sorted(p.name for p in world.store.layers_dir.iterdir()) == sorted(
        f"{x.diff_id[7:]}.squashfs" for x in (BASE, APP2)
    )
    with pytest.raises(NotFound):
        world.store.get("127.0.0.1:5000/app1:1")
    assert world.store.get("127.0.0.1:5000/app2:1").layers[0].is_file()
    counts = [
        world.db.conn.execute(query).fetchone()[0]
        for query in (
            "SELECT count(*) FROM images",
            "SELECT count(*) FROM image_layers",
            "SELECT count(*) FROM image_tags",
            "SELECT count(*) FROM image_digests",
            "SELECT count(*) FROM layers",
        )
    ]
    assert counts == [1, 2, 1, 1, 2]


def test_an_image_with_one_layer_twice_pulls_it_once(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.source.add("127.0.0.1:5000/twice:1", *image([BASE, APP1, BASE]))
    pulled = world.pull("127.0.0.1:5000/twice:1")
    names = [f"{x.diff_id[7:]}.squashfs" for x in (BASE, APP1, BASE)]
    assert [p.name for p in pulled.layers] == names
    assert world.source.served.count(BASE.desc.digest) == 1
    assert not world.content.has(BASE.desc.digest)


def test_a_re_pull_downloads_nothing_and_says_up_to_date(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.pull("127.0.0.1:5000/app1:1")
    served = len(world.source.served)
    events: list[PullEvent] = []
    world.pull("127.0.0.1:5000/app1:1", events)
    assert len(world.source.served) == served
    assert events[-1]["status"] == "Status: Image is up to date for 127.0.0.1:5000/app1:1"


def test_a_corrupted_blob_leaves_no_image(tmp_path: Path) -> None:
    world = World(tmp_path)
    corrupt = bytearray(world.source.blobs[APP1.desc.digest])
    corrupt[len(corrupt) // 2] ^= 0xFF
    world.source.blobs[APP1.desc.digest] = bytes(corrupt)
    with pytest.raises(DigestMismatch):
        world.pull("127.0.0.1:5000/app1:1")
    with pytest.raises(NotFound, match="not found"):
        world.store.get("127.0.0.1:5000/app1:1")
    assert world.store.all() == []
    assert world.db.conn.execute("SELECT count(*) FROM layers").fetchone()[0] == 0
    # Nothing of the refused pull stays: no partials, no blobs of its layers, no layers.
    assert list(tmp_path.rglob("*.partial")) == []
    assert list(world.store.layers_dir.iterdir()) == []
    assert not world.content.has(APP1.desc.digest) and not world.content.has(BASE.desc.digest)


def test_two_pulls_at_once_download_each_blob_once(tmp_path: Path) -> None:
    world = World(tmp_path)
    ref = parse_reference("127.0.0.1:5000/app1:1")

    async def both() -> list[Any]:
        return await asyncio.gather(
            world.puller.pull(ref, None, lambda e: None),
            world.puller.pull(ref, None, lambda e: None),
        )

    first, second = asyncio.run(both())
    assert first.id == second.id
    assert sorted(world.source.served) == sorted([BASE.desc.digest, APP1.desc.digest])


@pytest.mark.parametrize("fault", ["pull.blob_stored", "pull.layer_made", "pull.before_commit"])
def test_a_pull_killed_half_way_shows_nothing_and_the_next_one_finishes(
    tmp_path: Path, fault: str
) -> None:
    ref = "127.0.0.1:5000/app1:1"
    killed = subprocess.run(
        [sys.executable, "-m", "tests.local_images", str(tmp_path), ref],
        env={**os.environ, "HYPR_FAULT": fault},
        cwd=Path(__file__).parent.parent,
        capture_output=True,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    world = World(tmp_path)
    assert world.store.all() == []  # no half image is visible
    world.content.clean_partials()
    world.store.clean_partials()
    events: list[PullEvent] = []
    pulled = world.pull(ref, events)
    assert all(p.is_file() for p in pulled.layers) and len(pulled.layers) == 2
    if fault == "pull.before_commit":  # every layer was whole: nothing is downloaded again
        assert world.source.served == []
        assert statuses(events, BASE.desc.digest[7:19]) == ["Already exists"]
    assert list(tmp_path.rglob("*.partial")) == []
    assert sorted(p.name for p in world.content.blobs.iterdir()) == [
        world.source.images[ref].config_descriptor.digest[7:]
    ]


def test_builtin_images_resolve_with_docker_normalisation(tmp_path: Path) -> None:
    assets = tmp_path / "assets"
    (assets / "busybox").mkdir(parents=True)
    (assets / "busybox" / "manifest.json").write_text(
        json.dumps({"name": "busybox", "cmd": ["sh"], "env": ["PATH=/bin"]})
    )
    (assets / "busybox" / "rootfs.squashfs").write_bytes(b"\0" * 4096)
    store = ImageStore(tmp_path / "images", migrated(tmp_path), (assets,))
    for name in ("busybox", "busybox:latest", "docker.io/library/busybox", "library/busybox"):
        got = store.get(name)
        assert got.builtin and got.repo_tags == ["busybox:latest"] and got.config.cmd == ["sh"]
        assert got.layers == (assets / "busybox" / "rootfs.squashfs",)
    with pytest.raises(NotFound, match="image nginx not found"):
        store.get("nginx")
    with pytest.raises(InvalidArgument, match="invalid reference format"):
        store.get("Not//Valid")
