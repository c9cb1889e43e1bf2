"""Compose volumes end to end: a stack's named volume outlives `down` and goes with
`down -v`, relative bind paths show host files in the guest, external volumes must exist.
Real VMs under a real hyprd, in a namespace the module made."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from hypr.daemon.stacks import DOWN_REMOVED, UP_VOLUME
from hypr.sandbox import Hyprd, create_netns, delete_netns, wait_for
from tests.test_compose_crash import complete, crash_and_restart, gone

pytestmark = pytest.mark.vm

SLEEPER = {"image": "busybox", "command": ["sleep", "3600"]}


@dataclass
class Lab:
    hyprd: Hyprd
    root: Path

    def project(self, name: str, document: dict[str, Any]) -> Path:
        """A project directory `name` holding `document` as its compose.yaml."""
        directory = self.root / name
        directory.mkdir(exist_ok=True)
        (directory / "compose.yaml").write_text(yaml.safe_dump(document))
        return directory

    def compose(self, directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return self.hyprd.hypr(
            "compose", "-f", str(directory / "compose.yaml"), "-p", directory.name, *args
        )

    def ok(self, directory: Path, *args: str) -> str:
        result = self.compose(directory, *args)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def sh(self, directory: Path, service: str, script: str) -> subprocess.CompletedProcess[str]:
        return self.compose(directory, "exec", service, "--", "sh", "-c", script)

    def volumes(self) -> dict[str, dict[str, Any]]:
        names = self.hyprd.ok("volume", "ls", "-q").split()
        if not names:
            return {}
        return {v["Name"]: v for v in json.loads(self.hyprd.ok("volume", "inspect", *names))}

    def vms(self, project: str) -> list[str]:
        rows = self.hyprd.db_rows("SELECT name FROM vms WHERE name LIKE ?", (f"{project}-%",))
        return [r[0] for r in rows]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("compose-volumes")
    ns = create_netns()
    try:
        hyprd = Hyprd(ns, root / "daemon")
        hyprd.start()
        yield Lab(hyprd, root)
    finally:
        delete_netns(ns)


def test_named_volume_survives_down_and_goes_with_down_v(lab: Lab) -> None:
    stack = lab.project(
        "keep",
        {
            "services": {"db": {**SLEEPER, "volumes": ["data:/var/lib/db", "/scratch"]}},
            "volumes": {"data": {"labels": {"tier": "db"}}},
        },
    )
    up = lab.ok(stack, "up", "-d")
    assert "Volume keep_data" in up and "Created" in up
    volume = lab.volumes()["keep_data"]
    assert volume["Labels"] == {
        "tier": "db",
        "com.docker.compose.project": "keep",
        "com.docker.compose.volume": "data",
    }
    mountpoint = Path(volume["Mountpoint"])
    assert mountpoint == lab.hyprd.data_dir / "volumes" / "keep" / "data"
    anonymous = set(lab.volumes()) - {"keep_data"}
    assert len(anonymous) == 1  # /scratch

    written = lab.sh(stack, "db", "echo kept > /var/lib/db/file && echo gone > /scratch/f")
    assert written.returncode == 0, written.stderr
    assert (mountpoint / "file").read_text() == "kept\n"

    lab.ok(stack, "down")
    assert lab.vms("keep") == []
    assert set(lab.volumes()) >= {"keep_data", *anonymous}  # plain down keeps volumes

    again = lab.ok(stack, "up", "-d")
    assert "Volume keep_data" not in again  # it exists: used as it is
    read = lab.sh(stack, "db", "cat /var/lib/db/file")
    assert read.returncode == 0 and read.stdout == "kept\n", read.stderr

    down = lab.ok(stack, "down", "-v")
    assert "Volume keep_data" in down
    assert lab.vms("keep") == []
    left = set(lab.volumes())
    assert "keep_data" not in left and not mountpoint.exists()
    # the first VM's anonymous volume was left by the plain `down` (as Docker leaves it);
    # the second VM's went with it at `down -v`
    assert left == anonymous
    lab.hyprd.ok("volume", "prune", "-f")


def test_relative_bind_shows_host_files_in_the_guest(lab: Lab) -> None:
    stack = lab.project(
        "site",
        {
            "services": {
                "web": {
                    **SLEEPER,
                    "volumes": [
                        "./html:/www:ro",  # relative to the compose file's directory
                        {"type": "bind", "source": "./logs", "target": "/logs"},
                        "./made:/made",  # missing: the short syntax makes it
                    ],
                }
            }
        },
    )
    (stack / "html").mkdir()
    (stack / "html" / "index.html").write_text("from the host\n")
    (stack / "logs").mkdir()
    lab.ok(stack, "up", "-d")
    try:
        assert (stack / "made").is_dir()
        seen = lab.sh(stack, "web", "cat /www/index.html")
        assert seen.returncode == 0 and seen.stdout == "from the host\n", seen.stderr
        (stack / "html" / "index.html").write_text("edited\n")
        # virtiofs (cache=auto) sees host edits within its attribute timeout
        wait_for(lambda: lab.sh(stack, "web", "cat /www/index.html").stdout == "edited\n")
        refused = lab.sh(stack, "web", "echo x > /www/index.html")
        assert refused.returncode != 0
        assert (stack / "html" / "index.html").read_text() == "edited\n"
        wrote = lab.sh(stack, "web", "echo line > /logs/app.log && echo m > /made/m")
        assert wrote.returncode == 0, wrote.stderr
        assert (stack / "logs" / "app.log").read_text() == "line\n"
        assert (stack / "made" / "m").read_text() == "m\n"
        config = yaml.safe_load(lab.ok(stack, "config"))
        sources = [v["source"] for v in config["services"]["web"]["volumes"]]
        assert sources == [str(stack / "html"), str(stack / "logs"), str(stack / "made")]
    finally:
        lab.ok(stack, "down", "-v")
    assert (stack / "html" / "index.html").exists()  # down -v never touches bind sources


def test_external_volume_must_exist_and_outlives_down_v(lab: Lab) -> None:
    stack = lab.project(
        "ext",
        {
            "services": {"app": {**SLEEPER, "volumes": ["shared:/shared"]}},
            "volumes": {"shared": {"external": True, "name": "team-shared"}},
        },
    )
    before = set(lab.volumes())
    refused = lab.compose(stack, "up", "-d")
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines() == ["Error: external volume team-shared not found"]
    assert lab.vms("ext") == [] and set(lab.volumes()) == before
    networks = {r[0] for r in lab.hyprd.db_rows("SELECT name FROM networks")}
    assert "ext_default" not in networks

    lab.hyprd.ok("volume", "create", "team-shared")
    lab.ok(stack, "up", "-d")
    assert lab.sh(stack, "app", "touch /shared/x").returncode == 0
    lab.ok(stack, "down", "-v")
    assert "team-shared" in lab.volumes()  # not the stack's: down -v leaves it
    lab.hyprd.ok("volume", "rm", "team-shared")


def test_undeclared_volume_is_refused_before_anything(lab: Lab) -> None:
    stack = lab.project("undeclared", {"services": {"a": {**SLEEPER, "volumes": ["db:/db"]}}})
    before = set(lab.volumes())
    result = lab.compose(stack, "up", "-d")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"Error: {stack / 'compose.yaml'}: services.a.volumes[0]: undefined volume 'db' "
        "(declare it under the top-level volumes:)"
    ]
    assert lab.vms("undeclared") == [] and set(lab.volumes()) == before


def test_changed_mounts_recreate_the_vm(lab: Lab) -> None:
    document: dict[str, Any] = {
        "services": {"a": {**SLEEPER, "volumes": ["data:/data"]}},
        "volumes": {"data": None},
    }
    stack = lab.project("change", document)
    lab.ok(stack, "up", "-d")
    first = lab.hyprd.inspect("change-a-1")["id"]
    lab.ok(stack, "up", "-d")
    assert lab.hyprd.inspect("change-a-1")["id"] == first  # nothing changed
    document["services"]["a"]["volumes"] = ["data:/data:ro"]
    lab.project("change", document)
    lab.ok(stack, "up", "-d")
    assert lab.hyprd.inspect("change-a-1")["id"] != first
    assert lab.sh(stack, "a", "touch /data/x").returncode != 0  # now read-only
    lab.ok(stack, "down", "-v")
    assert "change_data" not in lab.volumes()


# --- failures and crashes ---------------------------------------------------------------


def test_failed_up_removes_the_volumes_it_made(lab: Lab) -> None:
    lab.hyprd.ok("run", "-d", "--name", "squatter", "-p", "8080:80", "busybox", "sleep", "3600")
    stack = lab.project(
        "half",
        {
            "services": {
                "first": {**SLEEPER, "volumes": ["data:/data", "/anon"]},
                "web": {**SLEEPER, "ports": ["8080:80"], "depends_on": ["first"]},
            },
            "volumes": {"data": None},
        },
    )
    before = set(lab.volumes())
    try:
        result = lab.compose(stack, "up", "-d")
        assert result.returncode != 0 and "8080" in result.stderr
        assert "half_data" in result.stderr  # named among what was rolled back
        assert lab.vms("half") == []
        assert set(lab.volumes()) == before  # the named one and first's anonymous one
    finally:
        lab.hyprd.ok("rm", "-f", "squatter")


@pytest.mark.parametrize("op", ["up", "down"])
def test_killed_daemon_finishes_volume_work(
    hyprd_factory: Callable[..., Hyprd], tmp_path: Path, op: str
) -> None:
    """hyprd killed just after `up` made the volume, or half-way through `down -v`: at its
    next start it finishes the operation, volumes included."""
    point = UP_VOLUME if op == "up" else DOWN_REMOVED
    hyprd = hyprd_factory(env={"HYPR_FAULT": point})
    lab = Lab(hyprd, tmp_path)
    stack = lab.project(
        "crash",
        {
            "services": {
                "a": {**SLEEPER, "volumes": ["data:/data"]},
                "b": {**SLEEPER, "volumes": ["data:/data"], "depends_on": ["a"]},
            },
            "volumes": {"data": None},
        },
    )
    if op == "up":
        crash_and_restart(hyprd, lambda: lab.compose(stack, "up", "-d"))
        wait_for(lambda: complete(hyprd), timeout=120)
        assert "crash_data" in lab.volumes()
        assert lab.sh(stack, "b", "echo hi > /data/f").returncode == 0
        assert lab.sh(stack, "a", "cat /data/f").stdout == "hi\n"
    else:
        lab.ok(stack, "up", "-d")
        crash_and_restart(hyprd, lambda: lab.compose(stack, "down", "-v"))
        wait_for(lambda: gone(hyprd), timeout=120)
        wait_for(lambda: "crash_data" not in lab.volumes(), timeout=30)
        assert not (hyprd.data_dir / "volumes" / "crash" / "data").exists()
