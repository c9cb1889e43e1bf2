"""docker-compose 1.29 (Debian's, on docker-py 5) drives hypr's Docker face end to end: a
stack of two services on two networks, one of them shared, where one service reaches the
other by its service name; `up -d`, `ps`, `exec -T`, `logs` and `down -v`, then `up`
attached (logs and events followed) until Ctrl-C, with the real VMs, bridges and volume
they stand for, all in a namespace the test made."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from hypr.sandbox import Hyprd, create_netns, delete_netns

pytestmark = pytest.mark.vm

PROJECT = "shop"
STACK: dict[str, Any] = {
    "version": "3.8",
    "services": {
        "db": {
            "image": "busybox",
            "command": ["sh", "-c", "echo db is up; echo kept > /data/mark; exec sleep 3600"],
            "networks": ["backend"],
            "volumes": ["data:/data"],
        },
        "api": {
            "image": "busybox",
            "command": ["sh", "-c", "echo api is up; exec sleep 3600"],
            "networks": ["frontend", "backend"],
            "depends_on": ["db"],
            "labels": {"tier": "api"},
        },
    },
    "networks": {
        "frontend": {},
        "backend": {"ipam": {"config": [{"subnet": "10.70.0.0/24"}]}},
    },
    "volumes": {"data": {}},
}


@dataclass
class Compose:
    hyprd: Hyprd
    dir: Path

    def run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        env = {**self.hyprd.docker_env, "COMPOSE_HTTP_TIMEOUT": "600"}
        return subprocess.run(
            ["docker-compose", "-p", PROJECT, *args],
            cwd=self.dir, env=env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
        return result.stdout

    def docker(self, *args: str) -> str:
        result = self.hyprd.docker(*args)
        assert result.returncode == 0, result.stderr
        return result.stdout


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Compose]:
    root = tmp_path_factory.mktemp("docker-compose")
    ns = create_netns()
    try:
        hyprd = Hyprd(ns, root / "daemon")
        hyprd.start()
        (root / "docker-compose.yml").write_text(yaml.safe_dump(STACK))
        stack = Compose(hyprd, root)
        try:
            yield stack
        finally:
            stack.run("down", "-v", "-t", "0")
            hyprd.stop()
    finally:
        delete_netns(ns)


def test_up_ps_exec_logs_down(compose: Compose) -> None:
    since = f"{time.time():.6f}"
    compose.ok("up", "-d")

    ps = compose.ok("ps")
    rows = {line.split()[0]: line for line in ps.splitlines()[2:]}
    assert set(rows) == {f"{PROJECT}_api_1", f"{PROJECT}_db_1"}, ps
    assert all(" Up" in row for row in rows.values()), ps
    assert compose.ok("ps", "-q", "api").strip() in compose.docker("ps", "-q", "--no-trunc")

    # Each service is a VM on the networks the file gives it, the shared one included.
    backend = json.loads(compose.docker("network", "inspect", f"{PROJECT}_backend"))[0]
    frontend = json.loads(compose.docker("network", "inspect", f"{PROJECT}_frontend"))[0]
    assert backend["Labels"]["com.docker.compose.project"] == PROJECT
    assert backend["IPAM"]["Config"][0]["Subnet"] == "10.70.0.0/24"
    on_backend = sorted(c["Name"] for c in backend["Containers"].values())
    assert on_backend == [f"{PROJECT}_api_1", f"{PROJECT}_db_1"]
    assert [c["Name"] for c in frontend["Containers"].values()] == [f"{PROJECT}_api_1"]

    # The service name resolves on the shared network, and the VM answers there.
    pinged = compose.run("exec", "-T", "api", "ping", "-c1", "-W5", "db")
    assert pinged.returncode == 0, pinged.stdout + pinged.stderr
    assert "10.70.0." in pinged.stdout
    missing = compose.run("exec", "-T", "db", "ping", "-c1", "-W2", "frontend-only-name")
    assert missing.returncode != 0
    assert compose.ok("exec", "-T", "db", "cat", "/data/mark").strip() == "kept"

    logs = compose.ok("logs", "--no-color")
    assert "db is up" in logs and "api is up" in logs

    # The events docker-compose follows: filtered by the project's label, as it asks.
    service = '{{.Type}} {{.Action}} {{index .Actor.Attributes "com.docker.compose.service"}}'
    events = compose.docker(
        "events", "--since", since, "--until", f"{time.time():.6f}",
        "--filter", f"label=com.docker.compose.project={PROJECT}", "--format", service,
    ).splitlines()  # fmt: skip
    for line in ["container create db", "container start db", "container create api"]:
        assert line in events, events
    assert events.index("container start db") < events.index("container start api")
    assert not any(line.startswith("network") for line in events)  # no labels on those

    compose.ok("down", "-v", "-t", "1")
    assert compose.docker("ps", "-aq") == ""
    names = compose.docker("network", "ls", "--format", "{{.Name}}").split()
    assert names == ["bridge"]
    assert f"{PROJECT}_data" not in compose.docker("volume", "ls", "-q").split()


def test_attached_up_follows_logs_and_events_until_interrupted(compose: Compose) -> None:
    """`up` without `-d` attaches to each container's output and follows the project's
    events; Ctrl-C stops the stack gracefully."""
    env = {**compose.hyprd.docker_env, "COMPOSE_HTTP_TIMEOUT": "600"}
    with subprocess.Popen(
        ["docker-compose", "-p", PROJECT, "up", "--no-color"],
        cwd=compose.dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    ) as up:  # fmt: skip
        assert up.stdout is not None
        seen = []
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not any("api is up" in x for x in seen):
            line = up.stdout.readline()
            if not line:
                break
            seen.append(line)
        assert any(line.startswith("db_1") and "db is up" in line for line in seen), seen
        up.send_signal(signal.SIGINT)
        rest, _ = up.communicate(timeout=300)
    assert up.returncode == 0, rest
    assert "Gracefully stopping" in rest and "Stopping shop_api_1 ... done" in rest
    states = compose.docker("ps", "-a", "--format", "{{.Names}} {{.State}}").splitlines()
    assert sorted(states) == [f"{PROJECT}_api_1 exited", f"{PROJECT}_db_1 exited"]
    compose.ok("down", "-v")
