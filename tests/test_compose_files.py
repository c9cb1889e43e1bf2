"""Compose as people write it, on real stacks in a namespace: an override file beside the
compose file, a profile, replicas under one DNS name, `compose run --rm`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hypr.sandbox import Hyprd, create_netns, delete_netns, wait_for

pytestmark = pytest.mark.vm

BASE = """
services:
  web:
    image: busybox
    command: [sleep, '3600']
    environment: [MODE=base]
    deploy: {replicas: 2}
  client:
    image: busybox
    command: [sleep, '3600']
  debug:
    image: busybox
    command: [sleep, '3600']
    profiles: [debug]
"""


@dataclass
class Stack:
    hyprd: Hyprd
    dir: Path

    def compose(self, *args: str) -> Any:
        return self.hyprd.hypr("compose", "--project-directory", str(self.dir), *args)

    def ok(self, *args: str) -> str:
        result = self.compose(*args)
        assert result.returncode == 0, result.stderr
        return str(result.stdout)

    def vms(self) -> dict[str, dict[str, Any]]:
        with self.hyprd.api() as api:
            return {vm["name"]: vm for vm in api.get("/stacks/files").json()["vms"]}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    ns = create_netns()
    root = tmp_path_factory.mktemp("files")
    try:
        hyprd = Hyprd(ns, root / "daemon")
        hyprd.start()
        (root / "files").mkdir()
        (root / "files" / "compose.yaml").write_text(BASE)
        stack = Stack(hyprd, root / "files")
        stack.ok("up", "-d")
        yield stack
    finally:
        delete_netns(ns)


def test_replicas_share_the_service_name(stack: Stack) -> None:
    vms = stack.vms()
    assert sorted(vms) == ["files-client-1", "files-web-1", "files-web-2"]  # no debug
    addresses = {vms[f"files-web-{n}"]["guest_ip"] for n in (1, 2)}
    answer = stack.ok("exec", "client", "--", "nslookup", "web")
    assert set(re.findall(r"Address: (\d+\.\d+\.\d+\.\d+)", answer)) >= addresses
    assert vms["files-web-2"]["guest_ip"] in stack.ok("exec", "client", "nslookup", "files-web-2")


def test_an_override_file_changes_a_running_service(stack: Stack) -> None:
    before = stack.vms()
    (stack.dir / "compose.override.yaml").write_text(
        "services:\n  web:\n    environment: [MODE=override]\n"
    )
    try:
        stack.ok("up", "-d")
        after = stack.vms()
        assert after["files-client-1"]["id"] == before["files-client-1"]["id"]
        assert after["files-web-1"]["id"] != before["files-web-1"]["id"]
        for index in ("1", "2"):
            out = stack.ok("exec", "--index", index, "web", "--", "sh", "-c", "echo $MODE")
            assert out == "override\n"
    finally:
        (stack.dir / "compose.override.yaml").unlink()


def test_a_profile_starts_only_when_asked(stack: Stack) -> None:
    assert "files-debug-1" not in stack.vms()
    stack.ok("--profile", "debug", "up", "-d")
    assert stack.vms()["files-debug-1"]["state"] == "running"
    # Without the profile, `up` leaves it: a service of the file is no orphan.
    result = stack.compose("up", "-d")
    assert result.returncode == 0 and "orphan" not in result.stderr
    assert "files-debug-1" in stack.vms()


def test_scaling_down_removes_the_highest_numbers(stack: Stack) -> None:
    stack.ok("up", "-d", "--scale", "web=1")
    assert not any(name.startswith("files-web-2") for name in stack.vms())
    result = stack.compose("up", "-d", "--scale", "api=2")
    assert result.returncode != 0 and result.stderr.strip() == "Error: no such service: api"


def test_run_rm_leaves_nothing_behind(stack: Stack) -> None:
    before = set(stack.vms())
    result = stack.compose("run", "--rm", "client", "sh", "-c", "echo one-off; exit 3")
    assert result.returncode == 3 and "one-off" in result.stdout
    wait_for(lambda: set(stack.vms()) == before)
    names = [r[0] for r in stack.hyprd.db_rows("SELECT name FROM vms")]
    assert not any("-run-" in name for name in names)


def test_zz_down(stack: Stack) -> None:
    stack.ok("down")
    assert stack.hyprd.db_rows("SELECT name FROM vms") == []
    assert stack.vms() == {}
