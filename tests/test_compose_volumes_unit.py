"""Compose volumes as pure logic: the short and long syntax, `tmpfs:`, top-level `volumes:`
(names, labels, external), relative and `~` paths, the config hash, and bad input."""

from __future__ import annotations

import copy
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from hypr.compose.project import HostPaths, Project, load_project
from hypr.compose.volumes import MountPlan
from hypr.errors import InvalidArgument
from hypr.sandbox import BIN
from hypr.volumes.mounts import IGNORED_BIND_OPTIONS, parse_volume_flag

PATHS = HostPaths("/srv/shop", "/home/ann")


def load(volumes: list[Any], declared: dict[str, Any] | None = None, **service: Any) -> Project:
    document: dict[str, Any] = {
        "services": {"db": {"image": "busybox", "volumes": volumes, **service}},
        "volumes": {"data": None} if declared is None else declared,
    }
    return load_project(document, "shop", PATHS)


def mounts(project: Project) -> list[MountPlan]:
    return project.service("db").mounts


def test_short_syntax() -> None:
    project = load(
        ["data:/var/lib/db", "data:/ro:ro", "data:/fresh:nocopy", "./conf:/etc/app:ro",
         "/abs:/abs", "~/cache:/cache", "~:/home", "../shared:/shared", "/anon"]
    )  # fmt: skip
    assert [(m.type, m.source, m.target, m.read_only) for m in mounts(project)] == [
        ("volume", "shop_data", "/var/lib/db", False),
        ("volume", "shop_data", "/ro", True),
        ("volume", "shop_data", "/fresh", False),
        ("bind", "/srv/shop/conf", "/etc/app", True),
        ("bind", "/abs", "/abs", False),
        ("bind", "/home/ann/cache", "/cache", False),
        ("bind", "/home/ann", "/home", False),
        ("bind", "/srv/shared", "/shared", False),
        ("volume", None, "/anon", False),  # anonymous: the daemon makes one per VM
    ]
    assert [m.nocopy for m in mounts(project)][:3] == [False, False, True]
    # compose makes a missing bind source of the short syntax a directory
    assert project.host_paths_to_create() == [
        "/srv/shop/conf", "/abs", "/home/ann/cache", "/home/ann", "/srv/shared"
    ]  # fmt: skip
    assert project.warnings == []


@pytest.mark.parametrize("option", sorted(IGNORED_BIND_OPTIONS))
def test_short_syntax_ignores_what_run_v_ignores(option: str) -> None:
    # `z`, `Z` and the propagation modes mean nothing to a VM: `hypr run -v` accepts and
    # ignores them, as Docker does, and so does compose's short syntax.
    project = load(
        [f"data:/db:{option}", f"data:/fresh:nocopy,{option}", f"./src:/app:{option},ro"]
    )
    assert mounts(project) == [
        MountPlan("volume", "shop_data", "/db"),
        MountPlan("volume", "shop_data", "/fresh", nocopy=True),
        MountPlan("bind", "/srv/shop/src", "/app", read_only=True, create_host_path=True),
    ]
    assert parse_volume_flag(f"shop_data:/db:{option}") == parse_volume_flag("shop_data:/db")


def test_long_syntax_and_tmpfs() -> None:
    project = load(
        [
            {"type": "volume", "source": "data", "target": "/db", "read_only": True,
             "volume": {"nocopy": True}},
            {"type": "bind", "source": "./src", "target": "/app", "bind": {"selinux": "z"}},
            {"type": "bind", "source": "/etc/hosts", "target": "/hosts",
             "bind": {"create_host_path": True}},
            {"type": "volume", "target": "/anon"},
            {"type": "tmpfs", "target": "/scratch", "tmpfs": {"size": "64m", "mode": 0o700}},
            {"type": "tmpfs", "target": "/bytes", "tmpfs": {"size": 1048576, "mode": "1777"}},
        ],
        tmpfs=["/run", "/tmp:size=1g,mode=755,ro"],
    )  # fmt: skip
    assert mounts(project) == [
        MountPlan("volume", "shop_data", "/db", read_only=True, nocopy=True),
        MountPlan("bind", "/srv/shop/src", "/app"),
        MountPlan("bind", "/etc/hosts", "/hosts", create_host_path=True),
        MountPlan("volume", None, "/anon"),
        MountPlan("tmpfs", None, "/scratch", tmpfs_size=64 << 20, tmpfs_mode=0o700),
        MountPlan("tmpfs", None, "/bytes", tmpfs_size=1 << 20, tmpfs_mode=0o1777),
        MountPlan("tmpfs", None, "/run", tmpfs_mode=0o1777),
        MountPlan("tmpfs", None, "/tmp", read_only=True, tmpfs_size=1 << 30, tmpfs_mode=0o755),
    ]
    # the long syntax makes no directory unless asked; ignored keys are named
    assert project.host_paths_to_create() == ["/etc/hosts"]
    assert project.warnings == [
        "services.db.volumes[1].bind.selinux: not supported by hypr yet, ignored"
    ]
    single = load([], tmpfs="/run")
    assert mounts(single) == [MountPlan("tmpfs", None, "/run", tmpfs_mode=0o1777)]


def test_volume_names_labels_and_external() -> None:
    declared = {
        "data": {"labels": ["tier=db"]},
        "named": {"name": "exact-name", "labels": {"k": "v"}},
        "ext": {"external": True},
        "ext_named": {"external": True, "name": "elsewhere"},
        "legacy": {"external": {"name": "old.style"}},
        "bound": {"driver": "local", "driver_opts": {"type": "none", "o": "bind",
                                                      "device": "./files"}},
        "unused": None,
    }  # fmt: skip
    project = load(
        ["data:/a", "named:/b", "ext:/c", "ext_named:/d", "legacy:/e", "bound:/f"], declared
    )
    plans = {v.key: v for v in project.volumes}
    assert "unused" not in plans  # only what a service mounts is made, as compose does
    assert {k: (v.name, v.external) for k, v in plans.items()} == {
        "data": ("shop_data", False),
        "named": ("exact-name", False),
        "ext": ("ext", True),
        "ext_named": ("elsewhere", True),
        "legacy": ("old.style", True),
        "bound": ("shop_bound", False),
    }
    assert plans["data"].labels == {
        "tier": "db",
        "com.docker.compose.project": "shop",
        "com.docker.compose.volume": "data",
    }
    assert plans["named"].labels["com.docker.compose.volume"] == "named"
    assert plans["ext"].labels == {}  # hypr does not make it, so it does not label it
    assert plans["bound"].options == {"type": "none", "o": "bind", "device": "/srv/shop/files"}
    assert [m.source for m in mounts(project)] == [
        "shop_data", "exact-name", "ext", "elsewhere", "old.style", "shop_bound"
    ]  # fmt: skip


def test_config_shows_the_volumes() -> None:
    config = load(
        ["data:/db:ro", {"type": "tmpfs", "target": "/t", "tmpfs": {"mode": "1777"}}]
    ).to_dict()
    assert config["volumes"] == {
        "data": {
            "name": "shop_data",
            "external": False,
            "labels": {"com.docker.compose.project": "shop", "com.docker.compose.volume": "data"},
        }
    }
    assert config["services"]["db"]["volumes"] == [
        {"type": "volume", "source": "shop_data", "target": "/db", "read_only": True},
        {"type": "tmpfs", "target": "/t", "tmpfs_mode": "1777"},
    ]
    assert "volumes" not in load_project({"services": {"a": {"image": "busybox"}}}, "p").to_dict()


def test_config_hash_follows_mounts_only() -> None:
    # The hash of a service without mounts is what it was before hypr had volumes, so an
    # `up` after the upgrade recreates no VM of an existing stack.
    document = {
        "services": {"a": {"image": "busybox", "command": ["sleep", "3600"], "networks": ["net"]}},
        "networks": {"net": None},
    }
    plain = load_project(document, "shop").service("a").config_hash
    assert plain == "24aaadf5145155dd9b473c628a98675110aec142bc1b17f760a05529f983e6d1"
    hashes = {
        load(volumes).service("db").config_hash
        for volumes in ([], ["data:/db"], ["data:/db:ro"], ["data:/other"], ["./x:/db"])
    }
    assert len(hashes) == 5
    assert load(["data:/db"]).service("db").config_hash == (
        load(["data:/db"], {"data": {"labels": ["x=y"]}}).service("db").config_hash
    )


@pytest.mark.parametrize(
    ("volumes", "declared", "message"),
    [
        (["ghost:/x"], None,
         "services.db.volumes[0]: undefined volume 'ghost' (declare it under the top-level "
         "volumes:)"),
        (["data:relative"], None,
         "services.db.volumes[0].target: invalid mount target 'relative': it must be an "
         "absolute path"),
        (["data:/"], None, "services.db.volumes[0].target: invalid mount target '/'"),
        (["data:/x:rx"], None, "services.db.volumes[0]: invalid volume 'data:/x:rx': unknown mode"),
        (["/h:/x:nocopy"], None, "unknown mode 'nocopy'"),
        (["a:b:c:d"], None, "services.db.volumes[0]: invalid volume 'a:b:c:d'"),
        ([":/x"], None, "services.db.volumes[0]: invalid volume ':/x'"),
        (["data:/x", "./a:/x/"], None, "services.db: duplicate mount point: /x"),
        (["~bob/x:/x"], None, "services.db.volumes[0]: ~bob/x: only ~ (your own home)"),
        ("data:/x", None, "services.db.volumes: expected a list"),
        ([{"target": "/x"}], None, "services.db.volumes[0].type: this key is required"),
        ([{"type": "npipe", "target": "/x"}], None, "services.db.volumes[0].type"),
        ([{"type": "bind", "target": "/x"}], None,
         "services.db.volumes[0]: mount /x: a bind mount needs a source"),
        ([{"type": "tmpfs", "source": "data", "target": "/x"}], None,
         "services.db.volumes[0]: mount /x: a tmpfs has no source"),
        ([{"type": "volume", "source": "./d", "target": "/x"}], None,
         "services.db.volumes[0]: source './d' is a path: use type bind"),
        ([{"type": "bind", "source": "/d", "target": "/x", "volume": {"nocopy": True}}], None,
         "services.db.volumes[0]: `volume` options apply only to type volume"),
        ([{"type": "volume", "source": "data", "target": "/x", "volume": {"subpath": "a"}}],
         None, "services.db.volumes[0].volume.subpath: not supported by hypr"),
        ([{"type": "tmpfs", "target": "/x", "tmpfs": {"size": "lots"}}], None,
         "services.db.volumes[0].tmpfs.size: invalid size 'lots'"),
        ([{"type": "tmpfs", "target": "/x", "tmpfs": {"mode": "888"}}], None,
         "services.db.volumes[0].tmpfs.mode: invalid mode '888'"),
        (["data:/x"], {"data": {"driver": "nfs"}},
         "volumes.data.driver: volume driver 'nfs' is not supported (use local)"),
        (["data:/x"], {"data": {"external": True, "driver_opts": {"o": "bind"}}},
         "volumes.data: an external volume takes no driver_opts"),
        (["data:/x"], {"data": {"name": "no way"}}, "volumes.data: invalid volume name 'no way'"),
        (["data:/x"], {"data": "yes"}, "volumes.data"),
        (["data:/x"], ["data"], "volumes: expected a mapping"),
    ],
)  # fmt: skip
def test_bad_volumes_get_one_line_naming_the_key(volumes: Any, declared: Any, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        load(volumes, declared)
    assert message in info.value.message
    assert "\n" not in info.value.message


@pytest.mark.parametrize(
    ("tmpfs", "message"),
    [
        (["/run:size=big"], "services.db.tmpfs[0]: invalid size 'big'"),
        (["/run", "/x:uid=1000"], "services.db.tmpfs[1]: tmpfs /x: unknown option 'uid=1000'"),
        (["run"], "services.db.tmpfs[0]: invalid mount target 'run'"),
        ([{"type": "bind", "target": "/x"}], "services.db.tmpfs[0]: expected a path"),
        (7, "services.db.tmpfs: expected a path or a list of paths"),
    ],
)
def test_bad_tmpfs(tmpfs: Any, message: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        load([], tmpfs=tmpfs)


def test_relative_paths_need_their_base() -> None:
    document = {"services": {"a": {"image": "busybox", "volumes": ["./src:/src"]}}}
    with pytest.raises(InvalidArgument, match=re.escape(
        "services.a.volumes[0]: the relative path './src' needs the project directory"
    )):  # fmt: skip
        load_project(copy.deepcopy(document), "p")
    document["services"]["a"]["volumes"] = ["~/src:/src"]
    with pytest.raises(InvalidArgument, match="needs your home directory"):
        load_project(copy.deepcopy(document), "p", HostPaths("/srv/p"))
    with pytest.raises(InvalidArgument, match="must be an absolute path"):
        HostPaths("relative/dir")


def test_cli_config_resolves_paths_from_the_file_and_home(tmp_path: Path) -> None:
    """`hypr compose config` needs no daemon: relative to the file's directory, wherever
    it runs from; `~` is the home of the user who runs it."""
    project = tmp_path / "proj"
    project.mkdir()
    (project / "compose.yaml").write_text(
        yaml.safe_dump(
            {
                "services": {"web": {"image": "busybox", "volumes": ["./site:/www:ro",
                                                                     "~/notes:/notes"]}},
            }
        )
    )  # fmt: skip
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    result = subprocess.run(
        [str(BIN / "hypr"), "compose", "-f", str(project / "compose.yaml"), "config"],
        cwd="/", env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no warning about volumes any more
    config = yaml.safe_load(result.stdout)
    assert [(v["source"], v["target"]) for v in config["services"]["web"]["volumes"]] == [
        (str(project / "site"), "/www"),
        (str(tmp_path / "home" / "notes"), "/notes"),
    ]
    assert not (project / "site").exists()  # `config` makes nothing; `up` makes it
