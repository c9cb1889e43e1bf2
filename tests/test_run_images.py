"""`hypr run` of registry images end to end: a real hyprd pulls from a real docker-registry
in its namespace (pull policies), and the guest runs the image as its config says
(entrypoint and cmd rules, env, workdir, user, labels, exposed ports and -P, stop signal);
the Debian image boots; compose pulls by `pull_policy`."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hypr.sandbox import in_ns, wait_for
from tests.oci_images import busybox_layers, debian_image
from tests.registry import PULL_TIMEOUT, RegistryLab, hyprd_with_registry

pytestmark = pytest.mark.vm

# A shell that waits for SIGQUIT (the image's StopSignal); SIGTERM would kill it with 143.
TRAP = "trap 'echo got-quit; exit 7' QUIT; while :; do sleep 0.1; done"


class Lab(RegistryLab):
    def exec(self, vm: str, *argv: str) -> str:
        return self.hyprd.ok("exec", vm, "--", *argv).strip()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """One daemon and one registry in one namespace for the module: boots are the cost."""
    root = tmp_path_factory.mktemp("run-images")
    with hyprd_with_registry(root) as (hyprd, registry):
        yield Lab(hyprd, registry, root)


def one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    return result.stderr


def test_run_pulls_a_missing_image_and_honours_its_config(lab: Lab) -> None:
    ref = lab.registry.push(busybox_layers(), "latest", "app/busybox")
    result = lab.run("-d", "--name", "cfg", "-e", "GREETING=bye", "-e", "NEW=1", ref, TRAP)
    assert result.returncode == 0, result.stderr
    err = result.stderr.splitlines()
    assert err[0] == f"Unable to find image '{ref}' locally"
    assert any(line.endswith(": Pull complete") for line in err)
    assert f"Status: Downloaded newer image for {ref}" in err
    assert result.stdout.strip() == lab.hyprd.inspect("cfg")["id"]  # only the id on stdout

    assert lab.exec("cfg", "cat", "/data/file") == "hard linked"  # the image's files
    assert lab.exec("cfg", "cat", "/data/hard") == "hard linked"
    assert lab.hyprd.hypr("exec", "cfg", "--", "test", "-e", "/data/gone.txt").returncode == 1
    assert lab.exec("cfg", "ls", "-A", "/opaque") == "new"  # no lower content shows through
    env = lab.exec("cfg", "env").splitlines()
    assert "GREETING=bye" in env and "GREETING=hello" not in env  # merged by key
    assert "NEW=1" in env and "PATH=/bin" in env
    assert lab.exec("cfg", "pwd") == "/data"  # WorkingDir
    assert lab.exec("cfg", "id", "-u") == "1000"  # User app, by name from /etc/passwd

    vm = lab.hyprd.inspect("cfg")
    assert vm["command"] == ["/bin/sh", "-c", TRAP]  # Entrypoint kept, Cmd replaced
    assert vm["user"] == "app" and vm["workdir"] == "/data"
    assert vm["labels"]["org.hypr.test"] == "busybox_layers"
    assert vm["exposed_ports"] == ["53/udp", "8080/tcp"]
    assert vm["stop_signal"] == "SIGQUIT"
    assert vm["ports"] == []  # exposed is not published without -P

    lab.hyprd.ok("stop", "cfg")
    assert lab.hyprd.inspect("cfg")["exit_code"] == 7  # SIGQUIT reached the trap
    lab.hyprd.ok("rm", "cfg")


def test_entrypoint_cmd_user_and_workdir_overrides(lab: Lab) -> None:
    ref = lab.registry.push(busybox_layers(), "latest", "rules/busybox")
    lab.hyprd.ok("pull", "-q", ref)
    default = lab.run("--rm", ref)
    assert default.returncode == 0 and "hello from busybox_layers" in default.stdout
    echo = lab.run("--rm", "--entrypoint", "/bin/echo", ref)  # the image's Cmd is dropped
    assert echo.returncode == 0 and "hello from busybox_layers" not in echo.stdout
    own = lab.run(
        "--rm", "-u", "0", "-w", "/tmp", "--entrypoint", "/bin/sh", ref, "-c", "id -u; pwd"
    )
    assert own.returncode == 0, own.stderr
    assert own.stdout.split()[-2:] == ["0", "/tmp"]


def test_pull_never_refuses_and_always_re_resolves(lab: Lab, tmp_path: Path) -> None:
    ref = lab.registry.push(busybox_layers(), "latest", "moving/busybox")
    never = lab.run("--pull", "never", "--name", "never", ref, "true")
    assert "never" in one_line_error(never, 125)
    assert "never" not in lab.hyprd.ok("ps", "-a")  # nothing made
    assert lab.hyprd.hypr("image", "inspect", ref).returncode == 1

    lab.hyprd.ok("pull", "-q", ref)
    layout = tmp_path / "layout"  # the same tag, moved to an image with one more layer
    shutil.copytree(busybox_layers(), layout)
    extra = tmp_path / "extra.tar"
    with tarfile.open(extra, "w") as tar:
        info = tarfile.TarInfo("extra.txt")
        info.size = 6
        tar.addfile(info, io.BytesIO(b"moved\n"))
    subprocess.run(
        ["umoci", "raw", "add-layer", "--image", f"{layout}:latest", str(extra)], check=True
    )
    lab.registry.push(layout, "latest", "moving/busybox")
    stale = lab.run("--rm", ref, "cat /extra.txt")  # missing: the old image, no pull
    assert stale.returncode != 0 and "Pulling" not in stale.stderr
    fresh = lab.run("--rm", "--pull", "always", ref, "cat /extra.txt")
    assert fresh.returncode == 0, fresh.stderr
    assert "Unable to find" not in fresh.stderr and "Pull complete" in fresh.stderr
    assert "moved" in fresh.stdout


def test_publish_all_publishes_the_exposed_ports(lab: Lab) -> None:
    ref = lab.registry.push(busybox_layers(), "latest", "web/busybox")
    server = "busybox httpd -f -p 8080 -h /data"
    result = lab.run("-d", "-P", "--name", "web", "-p", "8053:53/udp", ref, server)
    assert result.returncode == 0, result.stderr
    lines = lab.hyprd.ok("port", "web").splitlines()
    tcp = next(line for line in lines if line.startswith("8080/tcp -> 0.0.0.0:"))
    port = int(tcp.rsplit(":", 1)[1])
    assert 32768 <= port <= 60999
    assert lines.count("53/udp -> 0.0.0.0:8053") == 1 and len(lines) == 2  # -p wins for 53

    def served() -> bool:
        got = in_ns(lab.hyprd.netns, "curl", "-s", "-m", "3", f"http://127.0.0.1:{port}/file",
                    check=False)  # fmt: skip
        return got.stdout == "hard linked\n"

    wait_for(served, timeout=120)
    lab.hyprd.ok("rm", "-f", "web")


def test_debian_image_boots_and_runs_python(lab: Lab) -> None:
    ref = lab.registry.push(debian_image(), "latest", "debian")
    default = lab.run("--rm", ref)  # Cmd python3 /app/hello.py
    assert default.returncode == 0, default.stderr
    assert "hello from debian" in default.stdout
    code = "import os; print(os.getcwd(), os.path.exists('/etc/motd'))"
    own = lab.run("--rm", ref, "python3", "-c", code)
    assert own.returncode == 0, own.stderr
    assert "/app False" in own.stdout  # WorkingDir; the app layer's whiteout honoured


def test_compose_pulls_by_pull_policy(lab: Lab) -> None:
    ref = lab.registry.push(busybox_layers(), "latest", "stack/busybox")
    missing = lab.registry.host + "/stack/absent:1"
    file = lab.root / "compose.yaml"

    def compose(services: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
        file.write_text(yaml.safe_dump({"services": services}))
        return lab.hyprd.hypr("compose", "-f", str(file), "-p", "pulls", *args,
                              timeout=PULL_TIMEOUT)  # fmt: skip

    build = compose({"a": {"image": ref, "pull_policy": "build"}}, "up", "-d")
    assert "pull_policy" in one_line_error(build, 1)
    never = compose({"a": {"image": missing, "pull_policy": "never"}}, "up", "-d")
    assert never.returncode != 0 and "Traceback" not in never.stderr
    assert "Pulling" not in never.stderr and "pulls-a-1" not in lab.hyprd.ok("ps", "-a")

    service = {"a": {"image": ref, "command": ["sleep 3600"]}}
    up = compose(service, "up", "-d")
    assert up.returncode == 0, up.stderr
    assert f"Unable to find image '{ref}' locally" in up.stderr
    assert f"Status: Downloaded newer image for {ref}" in up.stderr
    assert lab.exec("pulls-a-1", "cat", "/data/file") == "hard linked"
    again = compose(service, "pull")
    assert again.returncode == 0 and f"Image is up to date for {ref}" in again.stderr
    assert compose(service, "down").returncode == 0


def test_the_api_pulls_what_it_is_asked_to_run(lab: Lab) -> None:
    """API users get the pull in the daemon (the CLI pulls first only to show progress)."""
    ref = lab.registry.push(busybox_layers(), "latest", "api/busybox")
    with lab.hyprd.api() as api:
        refused = api.post("/vms", json={"image": ref, "pull": "never", "start": False})
        assert refused.status_code == 404 and "never" in refused.json()["message"]
        made = api.post("/vms", json={"image": ref, "name": "via-api", "start": False})
        assert made.status_code == 201, made.text
        assert made.json()["exposed_ports"] == ["53/udp", "8080/tcp"]
        assert api.get(f"/images/{ref.replace('/', '%2F')}/json").status_code == 200
        assert api.delete("/vms/via-api").status_code == 204
