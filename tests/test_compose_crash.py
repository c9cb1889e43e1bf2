"""hyprd killed at each step of `compose up` and `compose down`: at its next start it
finishes the operation, so the stack is never left half made (issue 8, defect 10)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from hypr.daemon.stacks import DOWN_REMOVED, UP_CREATED, UP_NETWORK, UP_STARTED
from hypr.sandbox import Hyprd, sh, wait_for
from tests.conftest import links

pytestmark = pytest.mark.vm

PROJECT = "crash"
DOCUMENT: dict[str, Any] = {
    "services": {
        "a": {"image": "busybox", "command": ["sleep", "3600"], "networks": ["net"]},
        "b": {
            "image": "busybox",
            "command": ["sleep", "3600"],
            "networks": ["net"],
            "depends_on": ["a"],
        },
    },
    "networks": {"net": None},
}


def compose(hyprd: Hyprd, path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return hyprd.hypr("compose", "-f", str(path), "-p", PROJECT, *args)


def stack(hyprd: Hyprd) -> dict[str, Any]:
    with hyprd.api() as api:
        return dict(api.get(f"/stacks/{PROJECT}").json())


def qemus(hyprd: Hyprd) -> int:
    """QEMU processes running in the daemon's namespace, whatever the database says."""
    pids = sh("ip", "netns", "pids", hyprd.netns, check=False).stdout.split()
    count = 0
    for pid in pids:
        try:
            argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        count += b"qemu-system" in argv0
    return count


def bridge_of(hyprd: Hyprd, network: str) -> str:
    (view,) = json.loads(hyprd.ok("network", "inspect", network))
    return str(view["Options"]["com.docker.network.bridge.name"])


def complete(hyprd: Hyprd) -> bool:
    vms = stack(hyprd)["vms"]
    return (
        not hyprd.db_rows("SELECT project FROM stack_ops")
        and sorted(vm["service"] for vm in vms) == ["a", "b"]
        and all(vm["state"] == "running" for vm in vms)
    )


def gone(hyprd: Hyprd) -> bool:
    return not hyprd.db_rows("SELECT project FROM stack_ops") and stack(hyprd)["vms"] == []


def crash_and_restart(hyprd: Hyprd, run: Callable[[], subprocess.CompletedProcess[str]]) -> None:
    """Run the operation, see the daemon die at its fault point, start it again without."""
    assert hyprd.proc is not None
    result = run()
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: lost the connection to the hypr daemon before it finished"
    )
    assert hyprd.proc.wait(60) == -9  # SIGKILL, from the fault point
    hyprd.proc = None
    hyprd.extra_env = {}
    hyprd.start()
    assert "finishing the interrupted" in hyprd.log()


@pytest.mark.parametrize("point", [UP_NETWORK, UP_CREATED, UP_STARTED])
def test_interrupted_up_is_finished_at_restart(
    hyprd_factory: Callable[..., Hyprd], tmp_path: Path, point: str
) -> None:
    hyprd = hyprd_factory(env={"HYPR_FAULT": point})
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(DOCUMENT))
    crash_and_restart(hyprd, lambda: compose(hyprd, path, "up", "-d"))
    wait_for(lambda: complete(hyprd), timeout=120)

    vms = stack(hyprd)["vms"]
    assert sorted(vm["name"] for vm in vms) == ["crash-a-1", "crash-b-1"]
    assert sorted(r[0] for r in hyprd.db_rows("SELECT name FROM vms")) == [
        "crash-a-1",
        "crash-b-1",
    ]
    assert sorted(r[0] for r in hyprd.db_rows("SELECT name FROM networks")) == [
        "bridge",
        "crash_net",
    ]
    kernel = links(hyprd.netns)
    bridges = sorted(name for name, link in kernel.items() if link["kind"] == "bridge")
    assert bridges == sorted(bridge_of(hyprd, name) for name in ("bridge", "crash_net"))
    assert len([name for name in kernel if name.startswith("tap")]) == 2
    assert qemus(hyprd) == 2
    ps = compose(hyprd, path, "ps")
    assert ps.returncode == 0 and ps.stdout.count("Up ") == 2, ps.stdout

    # The finished stack is an ordinary one: a second `up` has nothing to do.
    again = compose(hyprd, path, "up", "-d")
    assert again.returncode == 0 and again.stdout.count("Running") == 2, again.stdout


def test_interrupted_down_is_finished_at_restart(
    hyprd_factory: Callable[..., Hyprd], tmp_path: Path
) -> None:
    hyprd = hyprd_factory(env={"HYPR_FAULT": DOWN_REMOVED})
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(DOCUMENT))
    assert compose(hyprd, path, "up", "-d").returncode == 0
    crash_and_restart(hyprd, lambda: compose(hyprd, path, "down"))
    wait_for(lambda: gone(hyprd), timeout=120)

    assert hyprd.db_rows("SELECT name FROM vms") == []
    assert [r[0] for r in hyprd.db_rows("SELECT name FROM networks")] == ["bridge"]
    kernel = links(hyprd.netns)
    bridges = [name for name, link in kernel.items() if link["kind"] == "bridge"]
    assert bridges == [bridge_of(hyprd, "bridge")]
    assert not any(name.startswith("tap") for name in kernel)
    wait_for(lambda: qemus(hyprd) == 0, timeout=30)
