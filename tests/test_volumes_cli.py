"""`hypr volume create|ls|inspect|rm|prune` through the CLI of a real hyprd (in a namespace
of its own): Docker's shapes, the files on disk, the rows after a restart, what reconcile
mends after a crash, and the bad inputs (one line, a non-zero exit, nothing changed)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from hypr.sandbox import BIN, Hyprd, wait_for
from tests.test_images_cli import refused

DOCKER_KEYS = {"CreatedAt", "Driver", "Labels", "Mountpoint", "Name", "Options", "Scope"}


def volumes_dir(daemon: Hyprd) -> Path:
    return daemon.data_dir / "volumes"


def inspect(daemon: Hyprd, name: str) -> dict[str, object]:
    [found] = json.loads(daemon.ok("volume", "inspect", name))
    return dict(found)


def names(daemon: Hyprd, *filters: str) -> list[str]:
    args = [arg for f in filters for arg in ("--filter", f)]
    return daemon.ok("volume", "ls", "-q", *args).split()


def rows(daemon: Hyprd) -> list[str]:
    return [name for (name,) in daemon.db_rows("SELECT name FROM volumes ORDER BY name")]


def on_disk(daemon: Hyprd) -> set[str]:
    """Every volume directory hypr made, as `group/name`."""
    root = volumes_dir(daemon)
    if not root.exists():
        return set()
    return {
        f"{group.name}/{path.name}"
        for group in root.iterdir()
        if group.is_dir() and group.name != ".trash"
        for path in group.iterdir()
    }


def trash_emptied(daemon: Hyprd) -> bool:
    trash = volumes_dir(daemon) / ".trash"
    return not trash.exists() or not any(trash.iterdir())


def test_create_ls_inspect_and_the_layout(hyprd: Hyprd) -> None:
    assert hyprd.ok("volume", "create", "data", "--label", "app=db", "--label", "tier") == "data\n"
    anonymous = hyprd.ok("volume", "create").strip()
    assert re.fullmatch(r"[0-9a-f]{64}", anonymous)
    project = "com.docker.compose.project=proj"
    assert hyprd.ok("volume", "create", "--label", project, "proj_db") == "proj_db\n"

    everything = sorted([anonymous, "data", "proj_db"])
    assert hyprd.ok("volume", "ls").splitlines() == [
        "DRIVER   VOLUME NAME",
        *(f"local    {name}" for name in everything),
    ]
    assert names(hyprd) == everything

    info = inspect(hyprd, "data")
    assert set(info) == DOCKER_KEYS
    assert info["Name"] == "data" and info["Driver"] == "local" and info["Scope"] == "local"
    assert info["Labels"] == {"app": "db", "tier": ""} and info["Options"] == {}
    assert info["Mountpoint"] == str(volumes_dir(hyprd) / "local" / "data")
    assert datetime.fromisoformat(str(info["CreatedAt"]).replace("Z", "+00:00")).tzinfo
    assert inspect(hyprd, anonymous)["Labels"] == {"com.docker.volume.anonymous": ""}
    assert inspect(hyprd, "proj_db")["Mountpoint"] == str(volumes_dir(hyprd) / "proj" / "db")

    assert on_disk(hyprd) == {"local/data", f"local/{anonymous}", "proj/db"}
    for name in ("local/data", f"local/{anonymous}", "proj/db"):
        path = volumes_dir(hyprd) / name
        assert path.stat().st_mode & 0o7777 == 0o755 and list(path.iterdir()) == []
    assert volumes_dir(hyprd).stat().st_mode & 0o777 == 0o700

    result = hyprd.hypr("volume", "inspect", "data", "nope")
    assert result.returncode == 1
    assert [v["Name"] for v in json.loads(result.stdout)] == ["data"]
    assert result.stderr == "Error: no such volume: nope\n"


def test_filters(hyprd: Hyprd) -> None:
    hyprd.ok("volume", "create", "alpha", "--label", "env=prod")
    hyprd.ok("volume", "create", "beta", "--label", "env=dev")
    hyprd.ok("volume", "create", "gamma")
    assert names(hyprd, "name=al") == ["alpha"]
    assert names(hyprd, "name=al", "name=mm") == ["alpha", "gamma"]
    assert names(hyprd, "label=env") == ["alpha", "beta"]
    assert names(hyprd, "label=env=prod") == ["alpha"]
    assert names(hyprd, "label=env", "label=env=dev") == ["beta"]
    assert names(hyprd, "label!=env") == ["gamma"]
    assert names(hyprd, "dangling=true", "driver=local") == ["alpha", "beta", "gamma"]
    assert names(hyprd, "dangling=false") == []
    assert "invalid filter 'bogus'" in refused(hyprd, "volume", "ls", "--filter", "bogus=1")
    assert "dangling=maybe" in refused(hyprd, "volume", "ls", "--filter", "dangling=maybe")
    assert "bad format of filter" in refused(hyprd, "volume", "ls", "--filter", "name")


def test_bad_input_changes_nothing(hyprd: Hyprd, tmp_path: Path) -> None:
    hyprd.ok("volume", "create", "dup")
    for bad in ("a", "-x", "a/b", "..", "x" * 256, "é1"):
        assert "invalid volume name" in refused(hyprd, "volume", "create", "--", bad)
    assert refused(hyprd, "volume", "create", "dup") == "Error: volume dup already exists"
    bind = ("--opt", "type=none", "--opt", "o=bind")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    cases = [
        (("--opt", "foo=bar"), "unknown volume option 'foo'"),
        (("--opt", "type=tmpfs", "--opt", "device=tmpfs"), "unsupported volume options"),
        ((*bind, "--opt", "device=relative/dir"), "must be an absolute path"),
        ((*bind, "--opt", f"device={tmp_path}/missing"), "does not exist"),
        ((*bind, "--opt", f"device={a_file}"), "is not a directory"),
        ((*bind, "--opt", f"device={hyprd.data_dir}/logs"), "inside hypr's data directory"),
        (("-d", "nfs"), "volume driver 'nfs' is not supported"),
    ]
    for args, message in cases:
        assert message in refused(hyprd, "volume", "create", "vol", *args)
    assert rows(hyprd) == ["dup"]
    assert on_disk(hyprd) == {"local/dup"}


def test_a_volume_binding_a_host_directory(hyprd: Hyprd, tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "keep.txt").write_text("mine")
    (tmp_path / "link").symlink_to(host)
    bind = ("--opt", "type=none", "--opt", "o=bind", "--opt")
    hyprd.ok("volume", "create", "hv", *bind, f"device={tmp_path}/link")
    hyprd.ok("volume", "create", "hv2", *bind, f"device={host}")  # one directory, two volumes
    info = inspect(hyprd, "hv")
    assert info["Mountpoint"] == str(host)
    assert info["Options"] == {"type": "none", "o": "bind", "device": f"{tmp_path}/link"}
    assert on_disk(hyprd) == set()

    assert hyprd.ok("volume", "rm", "hv") == "hv\n"
    out = hyprd.ok("volume", "prune", "-a", "-f")
    assert out == "Deleted Volumes:\nhv2\n\nTotal reclaimed space: 0B\n"
    assert rows(hyprd) == []
    assert (host / "keep.txt").read_text() == "mine"  # the user's files are never deleted


def test_rm_and_prune(hyprd: Hyprd) -> None:
    hyprd.ok("volume", "create", "keep")
    anonymous = hyprd.ok("volume", "create").strip()
    (volumes_dir(hyprd) / "local" / "keep" / "f").write_bytes(b"k" * 2000)
    (volumes_dir(hyprd) / "local" / anonymous / "f").write_bytes(b"a" * 1000)
    os.link(
        volumes_dir(hyprd) / "local" / anonymous / "f",
        volumes_dir(hyprd) / "local" / anonymous / "g",
    )

    assert refused(hyprd, "volume", "rm", "nope") == "Error: no such volume: nope"
    assert hyprd.ok("volume", "rm", "-f", "nope") == "nope\n"
    hyprd.ok("volume", "create", "gone")
    result = hyprd.hypr("volume", "rm", "gone", "nope")
    assert (result.returncode, result.stdout) == (1, "gone\n")
    assert result.stderr == "Error: no such volume: nope\n"

    asked = hyprd.hypr("volume", "prune", input="n\n")
    assert (
        asked.returncode == 0
        and "WARNING! This will remove anonymous local volumes" in asked.stdout
    )
    assert rows(hyprd) == sorted([anonymous, "keep"])

    out = hyprd.ok("volume", "prune", "-f")
    assert out == f"Deleted Volumes:\n{anonymous}\n\nTotal reclaimed space: 1kB\n"
    assert rows(hyprd) == ["keep"] and on_disk(hyprd) == {"local/keep"}
    assert hyprd.ok("volume", "prune", "-f") == "Total reclaimed space: 0B\n"
    assert hyprd.ok("volume", "prune", "-a", "-f").endswith("keep\n\nTotal reclaimed space: 2kB\n")
    assert rows(hyprd) == [] and on_disk(hyprd) == set()
    wait_for(lambda: trash_emptied(hyprd))


def test_rows_survive_a_restart_and_reconcile_mends_the_directories(
    hyprd: Hyprd, tmp_path: Path
) -> None:
    host = tmp_path / "host"
    host.mkdir()
    for name in ("va", "vb"):
        hyprd.ok("volume", "create", name)
    hyprd.ok("volume", "create", "--label", "com.docker.compose.project=proj", "proj_c")
    hyprd.ok("volume", "create", "dv", "-o", "type=none", "-o", "o=bind", "-o", f"device={host}")
    before = json.loads(hyprd.ok("volume", "inspect", "va", "vb", "proj_c", "dv"))
    root = volumes_dir(hyprd)
    (root / "local" / "va" / "data").write_text("kept")
    (host / "data").write_text("user's")

    hyprd.stop()
    shutil.rmtree(root / "local" / "vb")  # a row without its directory
    for stray in ("local/stray", "other/x", ".trash/half-deleted"):  # directories of no row
        (root / stray).mkdir(parents=True)
        (root / stray / "file").write_text("junk")
    hyprd.start()

    assert json.loads(hyprd.ok("volume", "inspect", "va", "vb", "proj_c", "dv")) == before
    assert on_disk(hyprd) == {"local/va", "local/vb", "proj/c"}
    assert not (root / "other").exists()
    assert (root / "local" / "va" / "data").read_text() == "kept"
    assert list((root / "local" / "vb").iterdir()) == []
    assert (root / "local" / "vb").stat().st_mode & 0o7777 == 0o755
    assert (host / "data").read_text() == "user's"
    wait_for(lambda: trash_emptied(hyprd))


@pytest.mark.parametrize("point", ["volume.create.dir", "volume.rm.row"])
def test_hyprd_killed_between_row_and_directory(
    hyprd_factory: Callable[..., Hyprd], point: str
) -> None:
    """Either step alone is mended at the next start: no row, no directory, the name free."""
    hyprd = hyprd_factory(env={"HYPR_FAULT": point})
    if point == "volume.rm.row":
        hyprd.ok("volume", "create", "vol")
        result = hyprd.hypr("volume", "rm", "vol")
    else:
        result = hyprd.hypr("volume", "create", "vol")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert hyprd.proc is not None and hyprd.proc.wait(30) == -signal.SIGKILL
    hyprd.proc = None
    assert (volumes_dir(hyprd) / "local" / "vol").is_dir()  # what the killed hyprd left
    hyprd.extra_env = {}
    hyprd.start()
    assert rows(hyprd) == [] and on_disk(hyprd) == set()
    wait_for(lambda: trash_emptied(hyprd))
    assert hyprd.ok("volume", "create", "vol") == "vol\n"


def test_a_volume_in_use_cannot_be_removed(hyprd: Hyprd) -> None:
    """`run -v NAME:/path` makes the volume if there is none; while any VM (running or
    not) mounts it, `rm` (even -f) and `prune -a` leave it."""
    hyprd.ok("run", "-d", "--name", "x", "-v", "myvol:/data", "busybox", "sleep", "1d")
    assert names(hyprd) == ["myvol"]
    assert names(hyprd, "dangling=false") == ["myvol"] and names(hyprd, "dangling=true") == []
    in_use = "Error: volume myvol is in use by VM x"
    assert refused(hyprd, "volume", "rm", "myvol") == in_use
    assert refused(hyprd, "volume", "rm", "-f", "myvol") == in_use
    assert hyprd.ok("volume", "prune", "-a", "-f") == "Total reclaimed space: 0B\n"
    hyprd.ok("stop", "-t", "0", "x")
    assert refused(hyprd, "volume", "rm", "myvol") == in_use
    hyprd.ok("rm", "x")
    assert names(hyprd) == ["myvol"]  # a named volume outlives its VM
    assert hyprd.ok("volume", "rm", "myvol") == "myvol\n"
    assert rows(hyprd) == []


def test_the_api_speaks_dockers_shapes(hyprd: Hyprd) -> None:
    with hyprd.api() as api:
        made = api.post("/volumes/create", json={"Name": "web", "Labels": {"a": "b"}})
        assert made.status_code == 201 and set(made.json()) == DOCKER_KEYS
        anonymous = api.post("/volumes", json={}).json()["Name"]
        listed = api.get("/volumes", params={"filters": '{"label": {"a=b": true}}'})
        assert listed.json() == {"Volumes": [made.json()], "Warnings": []}
        bad = api.get("/volumes", params={"filters": "{nope"})
        assert bad.status_code == 400 and bad.json()["message"].startswith("invalid filters")
        assert api.post("/volumes", json={"Name": "web"}).status_code == 409
        assert api.get("/volumes/nope").status_code == 404
        assert api.delete("/volumes/web").status_code == 204
        assert api.delete("/volumes/web", params={"force": "true"}).status_code == 204
        pruned = api.post("/volumes/prune").json()
        assert pruned == {"VolumesDeleted": [anonymous], "SpaceReclaimed": 0}


def test_racing_creates_of_one_name(hyprd: Hyprd) -> None:
    """Of eight `create race` at once one wins; the others are told it exists."""
    procs = [
        subprocess.Popen(
            [str(BIN / "hypr"), "volume", "create", "race"],
            env=hyprd.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    results = [(p.wait(60), *p.communicate()) for p in procs]
    assert sorted(code for code, _, _ in results) == [0] + [1] * 7
    assert {err for code, _, err in results if code} == {"Error: volume race already exists\n"}
    assert rows(hyprd) == ["race"] and on_disk(hyprd) == {"local/race"}
