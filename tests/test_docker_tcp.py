"""The Docker Engine API over TCP (HYPR_DOCKER_ADDR): API keys required, as on the REST
gateway; the real docker CLI sends one through its config's HttpHeaders, and a hijacked
`docker run` (attach) works over TCP as over the Unix socket. The CLI runs inside the test's
namespace, where the listener is."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from hypr.sandbox import Hyprd

pytestmark = pytest.mark.vm

ADDR = "127.0.0.1:41004"


def docker_in_ns(
    hyprd: Hyprd, config: Path, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    env = {"DOCKER_HOST": f"tcp://{ADDR}", "DOCKER_CONFIG": str(config), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        ["ip", "netns", "exec", hyprd.netns, "env", *(f"{k}={v}" for k, v in env.items()),
         "/usr/local/bin/docker", *args],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def test_docker_api_over_tcp_needs_a_key(
    hyprd_factory: Callable[..., Hyprd], tmp_path: Path
) -> None:
    hyprd = hyprd_factory(env={"HYPR_DOCKER_ADDR": ADDR})
    anonymous = tmp_path / "anonymous"
    anonymous.mkdir()
    refused = docker_in_ns(hyprd, anonymous, "ps")
    assert refused.returncode != 0 and "a valid API key is required" in refused.stderr

    key = hyprd.ok("apikey", "create", "docker").strip()
    keyed = tmp_path / "keyed"
    keyed.mkdir()
    (keyed / "config.json").write_text(
        json.dumps({"HttpHeaders": {"Authorization": f"Bearer {key}"}})
    )
    listed = docker_in_ns(hyprd, keyed, "ps", "-a", "--format", "{{.Names}}")
    assert listed.returncode == 0, listed.stderr
    ran = docker_in_ns(hyprd, keyed, "run", "--rm", "--name", "overtcp", "busybox", "sh", "-c",
                       "echo hello over tcp; exit 4")  # fmt: skip
    assert ran.returncode == 4, ran.stderr
    assert ran.stdout == "hello over tcp\n"
    assert "overtcp" not in hyprd.ok("ps", "-a")  # --rm
