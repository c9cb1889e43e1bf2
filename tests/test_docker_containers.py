"""Docker's `/containers` on a real hyprd, driven by the real clients: the `docker` CLI and
the Docker SDK for Python (docker-py 5 from Debian, and the SDK 7 where it is installed),
against the Docker socket of a hyprd in a namespace of the test's. Published ports are
reached on loopback inside that namespace. The JSON shapes are compared with the keys that
Docker's Engine API reference documents."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from hypr.sandbox import Hyprd, create_netns, delete_netns, in_ns, wait_for

pytestmark = pytest.mark.vm

WEB = "mkdir -p /www && echo hi > /www/index.html && exec httpd -f -p 80 -h /www"
# Docker Engine API 1.44: ContainerInspectResponse, ContainerState, ContainerConfig (the
# keys the brief and compose read), HostConfig (the same), NetworkSettings, EndpointSettings,
# MountPoint, ContainerSummary and Port.
INSPECT_KEYS = {
    "Id", "Created", "Path", "Args", "State", "Image", "ResolvConfPath", "HostnamePath",
    "HostsPath", "LogPath", "Name", "RestartCount", "Driver", "Platform", "MountLabel",
    "ProcessLabel", "AppArmorProfile", "ExecIDs", "HostConfig", "GraphDriver", "Mounts",
    "Config", "NetworkSettings",
}  # fmt: skip
STATE_KEYS = {
    "Status", "Running", "Paused", "Restarting", "OOMKilled", "Dead", "Pid", "ExitCode",
    "Error", "StartedAt", "FinishedAt",
}  # fmt: skip
CONFIG_KEYS = {
    "Hostname", "User", "Env", "Cmd", "Entrypoint", "Image", "WorkingDir", "Labels",
    "ExposedPorts", "Tty", "OpenStdin", "StopSignal", "AttachStdin", "AttachStdout",
    "AttachStderr", "Volumes",
}  # fmt: skip
HOST_CONFIG_KEYS = {
    "NetworkMode", "PortBindings", "RestartPolicy", "AutoRemove", "Binds", "Memory", "NanoCpus",
}  # fmt: skip
SETTINGS_KEYS = {
    "Bridge", "SandboxID", "HairpinMode", "LinkLocalIPv6Address", "LinkLocalIPv6PrefixLen",
    "Ports", "SandboxKey", "SecondaryIPAddresses", "SecondaryIPv6Addresses", "EndpointID",
    "Gateway", "GlobalIPv6Address", "GlobalIPv6PrefixLen", "IPAddress", "IPPrefixLen",
    "IPv6Gateway", "MacAddress", "Networks",
}  # fmt: skip
ENDPOINT_KEYS = {
    "IPAMConfig", "Links", "Aliases", "MacAddress", "DriverOpts", "NetworkID", "EndpointID",
    "Gateway", "IPAddress", "IPPrefixLen", "IPv6Gateway", "GlobalIPv6Address",
    "GlobalIPv6PrefixLen", "DNSNames",
}  # fmt: skip
MOUNT_KEYS = {"Type", "Source", "Destination", "Mode", "RW", "Propagation"}
SUMMARY_KEYS = {
    "Id", "Names", "Image", "ImageID", "Command", "Created", "Ports", "Labels", "State",
    "Status", "HostConfig", "NetworkSettings", "Mounts",
}  # fmt: skip

SDK_SCRIPT = """
import json, sys, docker
client = docker.from_env()
c = client.containers.run(
    "busybox", ["sleep", "300"], detach=True, name=sys.argv[1], labels={"sdk": sys.argv[1]},
    ports={"80/tcp": None}, environment={"GREETING": "hi"},
)
c.reload()
ports = c.attrs["NetworkSettings"]["Ports"]
listed = client.containers.list(filters={"label": f"sdk={sys.argv[1]}"})
others = client.containers.list(filters={"label": "sdk=nobody"})
c.stop(timeout=1)
waited = c.wait()
c.reload()
status = c.status
c.remove()
print(json.dumps({
    "version": docker.__version__, "listed": [x.name for x in listed],
    "others": len(others), "ports": ports,
    "env": c.attrs["Config"]["Env"], "waited": waited, "status": status,
    "gone": [x.name for x in client.containers.list(all=True, filters={"name": sys.argv[1]})],
}))
"""


@dataclass
class Lab:
    hyprd: Hyprd

    def docker(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.hyprd.docker(*args)

    def ok(self, *args: str) -> str:
        result = self.hyprd.docker(*args)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def api(self) -> httpx.Client:
        transport = httpx.HTTPTransport(uds=str(self.hyprd.run_dir / "docker.sock"))
        return httpx.Client(transport=transport, base_url="http://docker", timeout=300)

    def inspect(self, ref: str, version: str = "v1.44") -> dict[str, Any]:
        with self.api() as api:
            answer = api.get(f"/{version}/containers/{ref}/json")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def ids(self) -> set[str]:
        return set(self.ok("ps", "-a", "-q", "--no-trunc").split())


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """One daemon for the module: boots are the cost."""
    ns = create_netns()
    try:
        hyprd = Hyprd(ns, tmp_path_factory.mktemp("docker-containers"))
        hyprd.start()
        yield Lab(hyprd)
        hyprd.stop()
    finally:
        delete_netns(ns)


def http_body(ns: str, port: int) -> str | None:
    result = in_ns(ns, "curl", "-s", "-m", "3", f"http://127.0.0.1:{port}/", check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def one_message(result: subprocess.CompletedProcess[str]) -> str:
    """A refused docker command: exit code 125 or 1 and one line from the daemon."""
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    daemon = [line for line in lines if "Error response from daemon" in line]
    assert len(daemon) == 1 and "Traceback" not in result.stderr, result.stderr
    return daemon[0]


def test_run_detached_publishes_a_port_and_filters_find_it(lab: Lab) -> None:
    out = lab.ok("run", "-d", "-p", "8080:80", "--name", "web", "-l", "app=web", "busybox",
                 "sh", "-c", WEB)  # fmt: skip
    assert len(out) == 64 and lab.inspect("web")["Id"] == out  # only the id on stdout
    wait_for(lambda: http_body(lab.hyprd.netns, 8080) == "hi", timeout=60)

    fmt = ("--format", "{{.Names}}|{{.Status}}|{{.Ports}}")
    row = lab.ok("ps", "--filter", "label=app=web", *fmt)
    name, status, ports = row.split("|")
    assert name == "web" and status.startswith("Up ") and ports == "0.0.0.0:8080->80/tcp"
    assert lab.ok("ps", "--filter", "name=web", "--format", "{{.Names}}") == "web"
    assert lab.ok("ps", "--filter", "name=^/web$", "--format", "{{.Names}}") == "web"
    assert lab.ok("ps", "--filter", "label=app=other", "-q") == ""
    assert lab.ok("ps", "--filter", "status=exited", "-q") == ""
    assert lab.ok("ps", "--filter", "network=bridge", "--format", "{{.Names}}") == "web"
    assert lab.ok("ps", "--filter", "ancestor=busybox", "--format", "{{.Names}}") == "web"
    assert lab.ok("ps", "--filter", f"id={out[:10]}", "--format", "{{.Names}}") == "web"

    address = lab.ok("inspect", "--format", "{{.NetworkSettings.Networks.bridge.IPAddress}}", "web")
    assert address.startswith("10.88.") and address != "10.88.0.1"
    assert lab.ok("port", "web") == "80/tcp -> 0.0.0.0:8080"
    for ref in (out, out[:12], "/web"):  # full id, unique prefix, name with a slash
        assert lab.ok("inspect", "--format", "{{.Name}}", ref) == "/web"


def test_inspect_and_list_have_dockers_shapes(lab: Lab) -> None:
    lab.ok("run", "-d", "--name", "shapes", "-l", "k=v", "-e", "A=1", "-v", "/data", "-p", "80",
           "--stop-signal", "SIGQUIT", "--restart", "on-failure:2", "-m", "200m", "busybox",
           "sleep", "300")  # fmt: skip
    doc = lab.inspect("shapes")
    assert doc.keys() >= INSPECT_KEYS
    assert doc["State"].keys() >= STATE_KEYS and "Health" not in doc["State"]
    assert doc["Config"].keys() >= CONFIG_KEYS and doc["HostConfig"].keys() >= HOST_CONFIG_KEYS
    assert doc["NetworkSettings"].keys() >= SETTINGS_KEYS
    bridge = doc["NetworkSettings"]["Networks"]["bridge"]
    assert bridge.keys() >= ENDPOINT_KEYS
    state = doc["State"]
    assert (state["Status"], state["Running"], state["ExitCode"]) == ("running", True, 0)
    assert state["Pid"] > 0 and state["FinishedAt"] == "0001-01-01T00:00:00Z"
    assert doc["Image"].startswith("sha256:") and doc["Name"] == "/shapes"
    assert (doc["Path"], doc["Args"]) == ("sleep", ["300"])
    config = doc["Config"]
    assert config["Labels"]["k"] == "v" and "A=1" in config["Env"]
    assert config["StopSignal"] == "SIGQUIT" and config["Cmd"] == ["sleep", "300"]
    host = doc["HostConfig"]
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    assert host["Memory"] == 200 * 2**20 and host["NanoCpus"] == 10**9
    assert host["NetworkMode"] == "bridge"
    # `-p 80`: a free host port from the ephemeral range, published while the VM runs.
    (binding,) = doc["NetworkSettings"]["Ports"]["80/tcp"]
    assert binding["HostIp"] == "0.0.0.0" and 32768 <= int(binding["HostPort"]) < 61000
    assert host["PortBindings"]["80/tcp"] == [{"HostIp": "", "HostPort": binding["HostPort"]}]
    assert doc["NetworkSettings"]["IPAddress"] == bridge["IPAddress"] != ""
    assert bridge["Gateway"] == "10.88.0.1" and bridge["IPPrefixLen"] == 16
    (mount,) = doc["Mounts"]
    assert mount.keys() >= MOUNT_KEYS and mount["Type"] == "volume" and mount["RW"]
    assert mount["Destination"] == "/data" and len(mount["Name"]) == 64

    # The 12-digit id is an alias before API 1.45 (docker-compose 1.29 needs it), not after.
    short = doc["Id"][:12]
    assert short in bridge["Aliases"]
    newer = lab.inspect("shapes", version="v1.45")["NetworkSettings"]["Networks"]["bridge"]
    assert short not in (newer["Aliases"] or [])

    with lab.api() as api:
        listed = api.get("/v1.44/containers/json", params={"filters": '{"label":["k=v"]}'}).json()
    (item,) = listed
    assert item.keys() >= SUMMARY_KEYS
    assert item["Names"] == ["/shapes"] and item["State"] == "running"
    assert item["Status"].startswith("Up ") and item["Command"] == "sleep 300"
    assert isinstance(item["Created"], int) and item["ImageID"] == doc["Image"]
    assert item["Ports"] == [
        {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": int(binding["HostPort"]), "Type": "tcp"}
    ]
    assert item["HostConfig"] == {"NetworkMode": "bridge"}
    assert item["NetworkSettings"]["Networks"]["bridge"].keys() >= ENDPOINT_KEYS
    lab.ok("rm", "-f", "-v", "shapes")


def test_lifecycle_stop_start_kill_rename_remove(lab: Lab) -> None:
    lab.ok("run", "-d", "--name", "life", "busybox", "sh", "-c",
           "trap 'echo got-hup' HUP; echo trapping; while :; do sleep 0.2; done")  # fmt: skip
    with lab.api() as api:
        assert api.post("/v1.44/containers/life/start").status_code == 304  # running already
    # A signal other than KILL goes to the workload, which handles it and runs on.
    wait_for(lambda: "trapping" in lab.hyprd.ok("logs", "life"), timeout=30)
    assert lab.ok("kill", "-s", "HUP", "life") == "life"
    wait_for(lambda: "got-hup" in lab.hyprd.ok("logs", "life"), timeout=30)
    assert lab.inspect("life")["State"]["Running"]

    assert lab.ok("stop", "-t", "1", "life") == "life"
    state = lab.inspect("life")["State"]
    assert state["Status"] == "exited" and not state["Running"] and state["Pid"] == 0
    assert state["FinishedAt"] != "0001-01-01T00:00:00Z"
    with lab.api() as api:
        assert api.post("/v1.44/containers/life/stop").status_code == 304  # stopped already
    status = lab.ok("ps", "-a", "--filter", "name=life", "--format", "{{.Status}}")
    assert status.startswith("Exited (") and status.endswith(" ago")
    assert "exited" in lab.ok("ps", "-a", "--filter", "status=exited", "--format", "{{.State}}")
    assert "Container" in one_message(lab.docker("kill", "life"))  # not running: 409

    assert lab.ok("start", "life") == "life"
    assert lab.ok("rename", "life", "life_2") == ""  # Docker's names: `_` and `.` too
    assert lab.inspect("life_2")["Name"] == "/life_2"
    # Its network's DNS answers to the new name at once (busybox's nslookup asks the server).
    answer = lab.hyprd.ok("exec", "life_2", "--", "nslookup", "life_2")
    assert lab.inspect("life_2")["NetworkSettings"]["IPAddress"] in answer
    assert gone(lab, "life")
    assert lab.ok("kill", "life_2") == "life_2"  # KILL: the VM powers off at once
    state = lab.inspect("life_2")["State"]
    assert (state["Status"], state["ExitCode"]) == ("exited", 137)

    lab.ok("start", "life_2")
    assert "You cannot remove a running container" in one_message(lab.docker("rm", "life_2"))
    lab.ok("restart", "-t", "1", "life_2")
    assert lab.inspect("life_2")["State"]["Running"]
    assert lab.ok("rm", "-f", "life_2") == "life_2"
    assert gone(lab, "life_2")


def gone(lab: Lab, ref: str) -> bool:
    with lab.api() as api:
        answer = api.get(f"/v1.44/containers/{ref}/json")
    return answer.status_code == 404 and answer.json() == {"message": f"No such container: {ref}"}


def test_a_taken_name_is_dockers_conflict(lab: Lab) -> None:
    first = lab.ok("create", "--name", "taken", "busybox", "true")
    message = one_message(lab.docker("create", "--name", "taken", "busybox", "true"))
    assert (
        f'Conflict. The container name "/taken" is already in use by container "{first}". '
        "You have to remove (or rename) that container to be able to reuse that name."
    ) in message
    lab.ok("rm", "taken")


@pytest.mark.parametrize(
    "args, field",
    [
        (["--privileged"], "HostConfig.Privileged"),
        (["--cap-add", "NET_ADMIN"], "HostConfig.CapAdd"),
        (["--device", "/dev/null"], "HostConfig.Devices"),
        (["--pid", "host"], "HostConfig.PidMode"),
        (["--network", "host"], "HostConfig.NetworkMode host"),
        (["--dns", "192.0.2.53"], "HostConfig.Dns"),
        (["--read-only"], "HostConfig.ReadonlyRootfs"),
        (["--sysctl", "net.ipv4.ip_forward=1"], "HostConfig.Sysctls"),
        (["-i"], "OpenStdin"),
        (["-m", "50m"], "HostConfig.Memory"),
    ],
)
def test_refused_fields_say_which_and_change_nothing(lab: Lab, args: list[str], field: str) -> None:
    """Refused before anything is claimed: no VM, no anonymous volume."""
    before, volumes = lab.ids(), lab.ok("volume", "ls", "-q")
    message = one_message(lab.docker("run", "-d", "-v", "/data", *args, "busybox", "true"))
    assert field in message
    assert lab.ids() == before and lab.ok("volume", "ls", "-q") == volumes


def test_cgroup_knobs_are_accepted_with_a_warning(lab: Lab) -> None:
    result = lab.docker("create", "--name", "knobs", "--cpu-shares", "512", "busybox", "true")
    assert result.returncode == 0, result.stderr
    assert "hypr ignores HostConfig.CpuShares" in result.stderr
    lab.ok("rm", "knobs")


def test_wait_answers_exit_codes_and_survives_a_client_that_leaves(lab: Lab) -> None:
    cid = lab.ok("create", "--name", "waiter", "busybox", "sh", "-c", "sleep 1; exit 3")
    path = lab.hyprd.run_dir / "docker.sock"
    # `docker run -d` asks for the next exit before it starts, and never reads the answer.
    for _ in range(3):
        abandon_wait(path, cid)
    with lab.api() as api:
        now = api.post(f"/v1.44/containers/{cid}/wait", params={"condition": "not-running"})
        assert now.json() == {"StatusCode": 0, "Error": None}  # never ran: at once
        assert (
            api.post(f"/v1.44/containers/{cid}/wait", params={"condition": "bad"}).status_code
            == 400
        )
    lab.ok("start", "waiter")
    assert lab.ok("wait", "waiter") == "3"
    assert lab.inspect("waiter")["State"]["ExitCode"] == 3
    lab.ok("rm", "waiter")
    assert "Traceback" not in lab.hyprd.log()


def abandon_wait(path: Path, cid: str) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(path))
        sock.sendall(
            f"POST /v1.44/containers/{cid}/wait?condition=next-exit HTTP/1.1\r\n"
            "Host: docker\r\nContent-Length: 0\r\n\r\n".encode()
        )
        sock.settimeout(10)
        assert sock.recv(12) == b"HTTP/1.1 200"  # the headers come at once, the body later


def test_top_lists_the_workload_and_prune_removes_stopped_ones(lab: Lab) -> None:
    lab.ok("run", "-d", "--name", "topper", "busybox", "sleep", "300")
    top = lab.ok("top", "topper")
    titles, *rows = top.splitlines()
    assert "PID" in titles.split() and any(row.endswith("sleep 300") for row in rows)
    assert not any(row.split()[0] == "1" or row.rstrip().endswith("]") for row in rows)

    lab.ok("create", "--name", "old1", "-l", "prune=yes", "busybox", "true")
    lab.ok("create", "--name", "old2", "-l", "prune=no", "busybox", "true")
    old1 = lab.inspect("old1")["Id"]
    with lab.api() as api:
        pruned = api.post(
            "/v1.44/containers/prune", params={"filters": '{"label":["prune=yes"]}'}
        ).json()
    assert pruned == {"ContainersDeleted": [old1], "SpaceReclaimed": 0}
    assert lab.ok("ps", "-a", "--filter", "name=old", "--format", "{{.Names}}") == "old2"
    assert "Total reclaimed space" in lab.ok("container", "prune", "-f")
    names = lab.ok("ps", "-a", "--format", "{{.Names}}").split()
    assert "old2" not in names and "topper" in names  # a running one stays
    lab.ok("rm", "-f", "topper")


def test_healthcheck_and_extra_hosts(lab: Lab) -> None:
    lab.ok("run", "-d", "--name", "checked", "--health-cmd", "test -e /tmp/ok",
           "--health-interval", "1s", "--health-retries", "1", "--add-host", "db.local:192.0.2.7",
           "--add-host", "gw:host-gateway", "busybox", "sleep", "300")  # fmt: skip

    def health() -> str:
        return str(lab.inspect("checked")["State"]["Health"]["Status"])

    wait_for(lambda: health() == "unhealthy", timeout=60)
    lab.hyprd.ok("exec", "checked", "--", "touch", "/tmp/ok")
    wait_for(lambda: health() == "healthy", timeout=60)
    assert lab.ok("ps", "--filter", "health=healthy", "--format", "{{.Status}}").endswith(
        "(healthy)"
    )
    hosts = lab.hyprd.ok("exec", "checked", "--", "cat", "/etc/hosts")
    assert "192.0.2.7\tdb.local" in hosts and "10.88.0.1\tgw" in hosts
    lab.ok("rm", "-f", "checked")


def sdk_pythons() -> list[str]:
    """docker-py 5 (Debian's python3-docker, what docker-compose 1.29 uses) and the SDK 7
    if another Python has it."""
    found = []
    for python in ("/usr/bin/python3", shutil.which("python3") or ""):
        if (
            python
            and python not in found
            and subprocess.run([python, "-c", "import docker"], capture_output=True).returncode == 0
        ):
            found.append(python)
    return found


@pytest.mark.parametrize("python", sdk_pythons())
def test_the_docker_sdk_runs_lists_and_removes(lab: Lab, python: str) -> None:
    name = f"sdk{sdk_pythons().index(python)}"
    result = subprocess.run(
        [python, "-c", SDK_SCRIPT, name], env=lab.hyprd.docker_env, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["listed"] == [name] and seen["others"] == 0
    assert "GREETING=hi" in seen["env"]
    (binding,) = seen["ports"]["80/tcp"]  # published on a free port while it ran
    assert binding["HostIp"] == "0.0.0.0" and int(binding["HostPort"]) >= 32768
    assert seen["waited"] == {"StatusCode": 143, "Error": None}  # sleep ends on SIGTERM
    assert seen["status"] == "exited" and seen["gone"] == []


def test_the_sdk_5_is_here() -> None:
    """docker-compose 1.29's docker-py must be among the clients tested above."""
    assert "/usr/bin/python3" in sdk_pythons()


def test_list_is_quick(lab: Lab) -> None:
    with lab.api() as api:
        api.get("/v1.44/containers/json?all=1")
        start = time.monotonic()
        for _ in range(20):
            assert api.get("/v1.44/containers/json?all=1").status_code == 200
    assert (time.monotonic() - start) / 20 < 0.5
