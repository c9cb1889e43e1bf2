"""The volume rules without a daemon: names, `--opt`, filters, and the service on a real
SQLite file and directory (in use, races, undo after a failure, a stack's layout)."""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from hypr import faults
from hypr.config import Settings
from hypr.daemon import volumes as volume_service
from hypr.daemon.volumes import VolumeService
from hypr.errors import Conflict, InvalidArgument, NotFound
from hypr.state.db import Database
from hypr.state.vms import MountSpec, VmRecord, VmRepository, VmSpec
from hypr.state.volumes import VolumeRecord
from hypr.volumes.filters import parse_filters
from hypr.volumes.names import check_volume_name, directory_name, new_anonymous_name
from hypr.volumes.options import bound_device


@pytest.mark.parametrize("name", ["ab", "a1", "db_data", "x.y-z", "0" * 255])
def test_valid_names(name: str) -> None:
    assert check_volume_name(name) == name


@pytest.mark.parametrize("name", ["", "a", "_ab", ".ab", "a/b", "a b", "..", "a:b", "0" * 256])
def test_invalid_names(name: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid volume name"):
        check_volume_name(name)


def test_anonymous_names_are_64_hex_digits_and_differ() -> None:
    first, second = new_anonymous_name(), new_anonymous_name()
    assert len(first) == 64 and int(first, 16) >= 0 and first != second


@pytest.mark.parametrize(
    ("name", "stack", "directory"),
    [
        ("data", None, "data"),
        ("proj_db", "proj", "db"),
        ("custom", "proj", "custom"),  # compose's `name:`
        ("proj_..", "proj", "proj_.."),  # never `..`
        ("proj_.x", "proj", "proj_.x"),
    ],
)
def test_directory_names(name: str, stack: str | None, directory: str) -> None:
    assert directory_name(name, stack) == directory


def test_options(tmp_path: Path) -> None:
    private = tmp_path / "data"
    (private / "inside").mkdir(parents=True)
    host = tmp_path / "host"
    host.mkdir()
    (tmp_path / "link").symlink_to(host)
    bind = {"type": "none", "o": "bind"}
    assert bound_device({}, private) is None
    assert bound_device({**bind, "device": f"{tmp_path}/link"}, private) == host
    assert bound_device({**bind, "device": f"{host}/../host"}, private) == host
    bad = [
        ({"size": "1g"}, "unknown volume option 'size'"),
        ({**bind, "device": str(host), "uid": "0"}, "unknown volume option 'uid'"),
        ({"type": "tmpfs", "o": "bind", "device": str(host)}, "unsupported volume options"),
        ({"device": str(host)}, "unsupported volume options"),
        ({**bind}, "must be an absolute path"),
        ({**bind, "device": "host"}, "must be an absolute path"),
        ({**bind, "device": f"{tmp_path}/none"}, "does not exist"),
        ({**bind, "device": f"{private}/inside"}, "inside hypr's data directory"),
    ]
    for options, message in bad:
        with pytest.raises(InvalidArgument, match=message):
            bound_device(options, private)


def test_filters() -> None:
    vol = VolumeRecord(name="webdata", mountpoint="/x", created="", labels={"env": "prod"})
    assert parse_filters({}).matches(vol, in_use=True)
    assert parse_filters({"name": ["nope", "bdat"]}).matches(vol, in_use=False)
    assert not parse_filters({"name": ["nope"]}).matches(vol, in_use=False)
    assert parse_filters({"label": ["env", "env=prod"]}).matches(vol, in_use=False)
    assert not parse_filters({"label": ["env=dev"]}).matches(vol, in_use=False)
    assert not parse_filters({"label!": ["env"]}).matches(vol, in_use=False)
    assert parse_filters({"dangling": ["1"]}).matches(vol, in_use=False)
    assert not parse_filters({"dangling": ["true"]}).matches(vol, in_use=True)
    assert parse_filters({"dangling": ["false"]}).matches(vol, in_use=True)
    with pytest.raises(InvalidArgument, match="invalid filter 'until'"):
        parse_filters({"until": ["1h"]})
    with pytest.raises(InvalidArgument, match="dangling=yes"):
        parse_filters({"dangling": ["yes"]})


class World:
    """A VolumeService on a real database and data directory, and a way to add VMs."""

    def __init__(self, root: Path) -> None:
        self.settings = Settings(
            run_dir=root / "run",
            data_dir=root / "data",
            assets_dir=root / "assets",
            log_level="info",
            accel="tcg",
            default_subnet=IPv4Network("10.88.0.0/16"),
            api_addr="",
            metrics_addr="",
            ssh_allowed_cidr=IPv4Network("0.0.0.0/0"),
            ssh_port_min=2200,
            ssh_port_max=2299,
        )
        self.settings.data_dir.mkdir(parents=True)
        self.db = Database(self.settings.db_path)
        self.db.migrate()
        self.vms = VmRepository(self.db)
        self.service = VolumeService(self.settings, self.db, self.vms.all)

    def add_vm(self, name: str, *volumes: str) -> None:
        mounts = [MountSpec(type="volume", source=v, target=f"/m/{v}") for v in volumes]
        self.vms.add(
            VmRecord(
                id=f"{name:0<64}",
                name=name,
                image="busybox",
                spec=VmSpec(argv=["sh"], mounts=mounts),
                state="exited",
                created="2024-01-01T00:00:00Z",
            )
        )

    def directory(self, *parts: str) -> Path:
        return self.settings.volumes_dir.joinpath(*parts)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    made = World(tmp_path)
    yield made
    made.db.close()


def test_users_and_removal_rules(world: World) -> None:
    service = world.service
    service.create("shared")
    anonymous = service.create(None)
    assert anonymous.anonymous and service.create("other", anonymous=True).anonymous
    world.add_vm("web", "shared", anonymous.name)
    world.add_vm("worker", "shared")
    assert service.users("shared") == ["web", "worker"]
    with pytest.raises(Conflict, match="volume shared is in use by VMs web, worker"):
        service.remove("shared", force=True)
    with pytest.raises(NotFound, match="no such volume: gone"):
        service.remove("gone")
    service.remove("gone", force=True)
    assert service.prune(all=True) == (["other"], 0)
    assert service.remove_anonymous([anonymous.name, "shared"]) == []  # web still mounts it
    world.vms.remove(f"{'web':0<64}")
    assert service.remove_anonymous([anonymous.name, "shared", "gone"]) == [anonymous.name]
    assert [vol.name for vol in service.all()] == ["shared"]


def test_one_name_one_volume(world: World) -> None:
    service = world.service
    first = service.ensure("db", labels={"a": "1"})
    assert service.ensure("db") == first == service.get("db")
    with pytest.raises(Conflict, match="volume db already exists"):
        service.create("db")
    with pytest.raises(InvalidArgument):
        service.ensure("x")
    assert [vol.name for vol in service.all()] == ["db"]


def test_a_stack_named_local_cannot_take_a_standalone_directory(world: World) -> None:
    service = world.service
    stacked = service.create("local_data", stack="local")
    assert stacked.mountpoint == str(world.directory("local", "data"))
    with pytest.raises(Conflict, match="belongs to volume local_data"):
        service.create("data")
    with pytest.raises(Conflict, match="belongs to volume local_data"):
        service.ensure("data")
    assert service.create("proj_db", stack="proj").mountpoint == str(world.directory("proj", "db"))
    with pytest.raises(InvalidArgument, match="invalid stack name"):
        service.create("x_db", stack="../x")


def test_a_failure_after_the_directory_undoes_both(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(point: str) -> None:
        if point == volume_service.CREATE_DIR:
            raise OSError("disk gone")

    monkeypatch.setattr(faults, "point", fail)
    with pytest.raises(OSError, match="disk gone"):
        world.service.create("broken")
    assert world.service.all() == []
    assert not world.directory("local", "broken").exists()
