"""The Docker face's networks, images, volumes and events, driven by the real `docker` CLI
(and the Docker SDK of the system Python) against a hyprd in a test namespace: shapes as
Docker documents them, refusals that change nothing, connect and disconnect of a VM that is
not running (409 for a running one), pulls from a registry in the namespace, and events."""

from __future__ import annotations

import json
import subprocess
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from hypr.sandbox import Hyprd, create_netns, delete_netns
from tests.oci_images import busybox_layers
from tests.registry import Registry, start_registry

USER, PASSWORD = "alice", "s3cret-Pa55"
# Docker's network object (Engine API 1.44, NetworkResource), key for key.
NETWORK_KEYS = {
    "Name", "Id", "Created", "Scope", "Driver", "EnableIPv6", "IPAM", "Internal",
    "Attachable", "Ingress", "ConfigFrom", "ConfigOnly", "Containers", "Options", "Labels",
}  # fmt: skip
ENDPOINT_KEYS = {"Name", "EndpointID", "MacAddress", "IPv4Address", "IPv6Address"}
IMAGE_SUMMARY_KEYS = {
    "Id", "ParentId", "RepoTags", "RepoDigests", "Created", "Size", "SharedSize", "Labels",
    "Containers",
}  # fmt: skip
IMAGE_INSPECT_KEYS = {
    "Id", "RepoTags", "RepoDigests", "Parent", "Comment", "Created", "DockerVersion", "Author",
    "Config", "Architecture", "Os", "Size", "GraphDriver", "RootFS", "Metadata",
}  # fmt: skip


@dataclass
class Lab:
    hyprd: Hyprd
    registry: Registry
    private: Registry  # htpasswd: USER, PASSWORD
    root: Path

    def docker(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.hyprd.docker(*args)

    def ok(self, *args: str) -> str:
        result = self.docker(*args)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def refused(self, *args: str) -> str:
        """A request the daemon refuses: non-zero, and one line that says why."""
        result = self.docker(*args)
        assert result.returncode != 0, result.stdout
        # Commands that take several names (rm, rmi) add the exit status on a line.
        lines = [x for x in result.stderr.strip().splitlines() if not x.startswith("exit status")]
        assert len(lines) == 1 and lines[0].startswith("Error response from daemon: "), lines
        return lines[0].removeprefix("Error response from daemon: ")

    def network(self, name: str) -> dict[str, Any]:
        views = json.loads(self.ok("network", "inspect", name))
        assert len(views) == 1
        return dict(views[0])

    def network_names(self) -> list[str]:
        return sorted(self.ok("network", "ls", "--format", "{{.Name}}").split())

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        with self.hyprd.api() as api:
            response = api.request(method, path, **kwargs)
        assert response.status_code < 300, response.text
        return response.json() if response.content else None


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """One daemon and one registry in one namespace for the module."""
    root = tmp_path_factory.mktemp("docker-networks")
    ns = create_netns()
    try:
        hyprd = Hyprd(ns, root / "daemon")
        hyprd.start()
        registry = start_registry(ns, root / "registry")
        private = start_registry(ns, root / "private", {USER: PASSWORD}, port=5001)
        try:
            yield Lab(hyprd, registry, private, root)
        finally:
            registry.stop()
            private.stop()
            hyprd.stop()
    finally:
        delete_netns(ns)


def test_network_create_ls_inspect_rm(lab: Lab) -> None:
    bridge = lab.network("bridge")  # hypr's default network answers to Docker's name
    assert set(bridge) == NETWORK_KEYS
    assert bridge["Scope"] == "local" and bridge["Driver"] == "bridge"
    assert bridge["Options"]["com.docker.network.bridge.default_bridge"] == "true"

    net_id = lab.ok(
        "network", "create", "--subnet", "10.60.0.0/24", "--gateway", "10.60.0.254",
        "--ip-range", "10.60.0.128/25", "--label", "tier=db", "--internal",
        "-o", "com.docker.network.bridge.name=br-docker", "backend",
    ).strip()  # fmt: skip
    assert len(net_id) == 64
    view = lab.network("backend")
    assert set(view) == NETWORK_KEYS
    assert view["Id"] == net_id and view["Internal"] is True and view["EnableIPv6"] is False
    assert view["IPAM"] == {
        "Driver": "default",
        "Options": {},
        "Config": [
            {"Subnet": "10.60.0.0/24", "Gateway": "10.60.0.254", "IPRange": "10.60.0.128/25"}
        ],
    }
    assert view["Options"] == {"com.docker.network.bridge.name": "br-docker"}
    assert view["Labels"] == {"tier": "db"} and view["Containers"] == {}
    assert "br-docker" in lab.hyprd.hypr("network", "inspect", "backend").stdout  # a real bridge

    lab.ok("network", "create", "front")
    ls = lab.ok(
        "network", "ls", "--no-trunc", "--format", "{{.ID}} {{.Name}} {{.Driver}} {{.Scope}}"
    )
    assert f"{net_id} backend bridge local" in ls.splitlines()
    assert lab.ok("network", "ls", "-q", "--filter", "label=tier=db").split() == [net_id[:12]]
    assert lab.ok("network", "ls", "--format", "{{.Name}}", "-f", "name=back").split() == [
        "backend"
    ]
    custom = lab.ok("network", "ls", "--format", "{{.Name}}", "-f", "type=custom").split()
    assert sorted(custom) == ["backend", "front"]
    builtin = lab.ok("network", "ls", "--format", "{{.Name}}", "-f", "type=builtin").split()
    assert builtin == ["bridge"]
    assert lab.ok("network", "ls", "-q", "-f", "driver=overlay").split() == []
    assert lab.ok("network", "ls", "-q", "-f", f"id={net_id[:6]}").split() == [net_id[:12]]
    assert lab.refused("network", "ls", "-f", "colour=red") == "invalid filter 'colour'"

    assert lab.ok("network", "rm", "front").strip() == "front"
    assert lab.ok("network", "prune", "-f", "--filter", "label=tier=db").count("backend") == 1
    assert lab.network_names() == ["bridge"]
    assert lab.refused("network", "inspect", "backend") == "network backend not found"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-d", "overlay"], "network driver 'overlay' is not supported"),
        (["--ipv6"], "IPv6 networks are not supported"),
        (["--ipam-driver", "dhcp"], "IPAM driver 'dhcp' is not supported"),
        (["-o", "com.docker.network.driver.mtu=9000"], "com.docker.network.driver.mtu=9000"),
        (["-o", "com.docker.network.bridge.enable_icc=false"], "enable_icc=false"),
        (["--subnet", "10.61.0.0/24", "--aux-address", "a=10.61.0.5"], "auxiliary addresses"),
        (["--subnet", "fd00::/64"], "only IPv4"),
        (["-o", "com.docker.network.bridge.name=this-name-is-too-long"], "invalid bridge name"),
        (["--scope", "swarm"], "scope 'swarm' is not supported"),
    ],
)
def test_refused_network_creates_change_nothing(lab: Lab, args: list[str], message: str) -> None:
    before = lab.network_names()
    assert message in lab.refused("network", "create", *args, "refused")
    assert lab.network_names() == before


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"IPAM": {"Config": [{"Subnet": "10.61.0.0/24", "IPRange": "10.62.0.0/25"}]}}, "inside"),
        ({"IPAM": {"Config": [{"IPRange": "10.62.0.0/25"}]}}, "an IP range needs --subnet"),
        ({"Ingress": True}, "swarm networks"),
        ({"EnableIPv6": True, "Driver": None}, "IPv6 networks are not supported"),
        ({"Name": "bad name"}, "invalid network name"),
    ],
)
def test_refused_raw_creates_change_nothing(lab: Lab, body: dict[str, Any], message: str) -> None:
    """What the CLI would refuse itself, sent as other clients may send it."""
    before = lab.network_names()
    response = _docker_api(lab, "POST", "/v1.44/networks/create", {"Name": "raw", **body})
    assert response.status_code == 400 and message in response.json()["message"]
    assert lab.network_names() == before


def test_duplicate_and_reserved_names_and_default_network(lab: Lab) -> None:
    lab.ok("network", "create", "twice")
    try:
        assert lab.refused("network", "create", "twice") == "network with name twice already exists"
        assert "reserved" in lab.refused("network", "create", "none")
        assert "default network" in lab.refused("network", "rm", "bridge")
        assert lab.refused("network", "rm", "nothing-here") == "network nothing-here not found"
    finally:
        lab.ok("network", "rm", "twice")


@pytest.mark.vm
def test_connect_disconnect_created_vm_then_409_while_running(lab: Lab) -> None:
    since = f"{time.time():.6f}"
    lab.ok("network", "create", "--subnet", "10.63.0.0/24", "--ip-range", "10.63.0.128/25", "n1")
    created = {"image": "busybox", "name": "c1", "command": ["sleep", "1d"], "start": False}
    vm = lab.api("POST", "/vms", json=created)
    try:
        lab.ok("network", "connect", "--alias", "db2", "--ip", "10.63.0.20", "n1", "c1")
        endpoint = lab.network("n1")["Containers"][vm["id"]]
        assert set(endpoint) == ENDPOINT_KEYS
        assert endpoint["Name"] == "c1" and endpoint["IPv4Address"] == "10.63.0.20/24"
        assert "already connected" in lab.refused("network", "connect", "n1", "c1")
        assert lab.refused("network", "connect", "n1", "ghost") == "No such container: ghost"

        # Off the default network and back on it: the NICs stay numbered, aliases follow.
        lab.ok("network", "disconnect", "bridge", "c1")
        assert vm["id"] not in lab.network("bridge")["Containers"]
        lab.ok("network", "connect", "bridge", "c1")
        nets = [nic["network"] for nic in lab.api("GET", "/vms/c1")["networks"]]
        assert nets == ["n1", "bridge"]
        lab.ok("network", "disconnect", "n1", "c1")
        lab.ok("network", "connect", "--alias", "db2", "n1", "c1")  # from the IP range now
        address = lab.network("n1")["Containers"][vm["id"]]["IPv4Address"]
        assert address.startswith("10.63.0.") and int(address.split(".")[3].split("/")[0]) >= 128

        lab.api("POST", "/vms/c1/start")
        guest = lab.api("POST", "/vms/c1/exec", json={"command": ["ip", "-4", "-o", "addr"]})
        assert address in guest["stdout"]
        looked_up = lab.api("POST", "/vms/c1/exec", json={"command": ["nslookup", "db2"]})
        assert address.split("/")[0] in looked_up["stdout"]  # the alias is a DNS name on n1

        assert "cannot be hot-plugged" in lab.refused("network", "disconnect", "n1", "c1")
        assert "cannot be hot-plugged" in lab.refused("network", "connect", "bridge", "c1")
        assert vm["id"] in lab.network("n1")["Containers"]  # nothing changed

        lab.api("POST", "/vms/c1/stop", params={"timeout": "0"})
        events = lab.ok(
            "events", "--since", since, "--until", f"{time.time() + 1:.6f}",
            "--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
        ).splitlines()  # fmt: skip
        assert events[:1] == ["network create n1"]
        wanted = ["container create c1", "container start c1", "container die c1"]
        wanted += ["container stop c1", "network connect n1", "network disconnect n1"]
        for line in wanted:
            assert line in events, events
        assert events.index("network connect n1") < events.index("container start c1")
    finally:
        lab.api("DELETE", "/vms/c1", params={"force": "true"})
        lab.docker("network", "rm", "n1")


def test_events_stream_follows_and_filters(lab: Lab) -> None:
    with subprocess.Popen(
        ["docker", "events", "--filter", "type=network", "--format", "{{json .}}"],
        env=lab.hyprd.docker_env,
        stdout=subprocess.PIPE,
        text=True,
    ) as follower:
        time.sleep(1)  # the stream is open once the CLI has its answer's headers
        lab.ok("volume", "create", "not-an-event")
        lab.ok("network", "create", "--label", "k=v", "watched")
        lab.ok("network", "rm", "watched")
        assert follower.stdout is not None
        created = json.loads(follower.stdout.readline())
        removed = json.loads(follower.stdout.readline())
        follower.terminate()
    assert created["Type"] == "network" and created["Action"] == "create"
    assert created["Actor"]["Attributes"] == {"name": "watched", "type": "bridge"}
    assert created["scope"] == "local" and created["timeNano"] // 10**9 == created["time"]
    assert removed["Action"] == "destroy" and removed["Actor"]["ID"] == created["Actor"]["ID"]
    lab.ok("volume", "rm", "not-an-event")
    assert lab.ok("version", "--format", "{{.Server.APIVersion}}").strip() == "1.44"


def test_pull_images_tag_rmi(lab: Lab) -> None:
    ref = lab.registry.push(busybox_layers(), "latest", "team/busybox")
    pulled = lab.docker("pull", ref)
    assert pulled.returncode == 0, pulled.stderr
    assert "Pull complete" in pulled.stdout and f"Downloaded newer image for {ref}" in pulled.stdout
    assert pulled.stdout.strip().splitlines()[-1] == ref
    assert "Image is up to date" in lab.ok("pull", ref)

    rows = lab.ok("images", "--format", "{{.Repository}}:{{.Tag}}").split()
    assert ref in rows and "busybox:latest" in rows
    summary = next(s for s in _image_list(lab) if ref in s["RepoTags"])
    assert set(summary) == IMAGE_SUMMARY_KEYS
    assert lab.ok("images", "-q", "--filter", "reference=*/team/*").split() == [
        summary["Id"].removeprefix("sha256:")[:12]
    ]
    view = json.loads(lab.ok("image", "inspect", ref))[0]
    assert set(view) == IMAGE_INSPECT_KEYS and view["Id"] == summary["Id"]
    assert view["Os"] == "linux" and view["Architecture"] == "amd64"

    lab.ok("tag", ref, "app:stable")
    assert "app:stable" in json.loads(lab.ok("image", "inspect", "app:stable"))[0]["RepoTags"]
    assert lab.ok("rmi", "app:stable").strip() == "Untagged: app:stable"
    removed = lab.ok("rmi", ref).splitlines()
    assert removed[0] == f"Untagged: {ref}" and f"Deleted: {summary['Id']}" in removed

    assert lab.refused("image", "inspect", "app:stable") == "No such image: app:stable"
    assert lab.refused("rmi", "app:stable") == "No such image: app:stable"
    assert lab.refused("tag", "app:stable", "other:1") == "No such image: app:stable"
    missing = lab.refused("pull", f"{lab.registry.host}/team/missing:1")
    assert "not found" in missing or "unknown" in missing
    assert "hypr's built-in image" in lab.refused("rmi", "busybox")


def test_login_then_pull_with_x_registry_auth(lab: Lab) -> None:
    """`docker login` asks the daemon (`/auth`), then sends the credentials it stored with
    each pull (`X-Registry-Auth`); the daemon keeps none."""
    ref = lab.private.push(busybox_layers(), "latest", "team/private", creds=f"{USER}:{PASSWORD}")
    env = {**lab.hyprd.docker_env, "DOCKER_CONFIG": str(lab.root / "docker-config")}

    def docker(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", *args], env=env, input=input or "", capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip

    anonymous = docker("pull", ref)
    assert anonymous.returncode != 0 and "may require 'docker login'" in anonymous.stderr
    bad = docker("login", "-u", USER, "--password-stdin", lab.private.host, input="wrong")
    assert bad.returncode != 0
    good = docker("login", "-u", USER, "--password-stdin", lab.private.host, input=PASSWORD)
    assert good.returncode == 0 and "Login Succeeded" in good.stdout, good.stderr
    pulled = docker("pull", ref)
    assert pulled.returncode == 0 and "Pull complete" in pulled.stdout, pulled.stderr
    lab.ok("rmi", ref)


def test_volumes_through_the_docker_api(lab: Lab) -> None:
    assert lab.ok("volume", "create", "--label", "app=db", "data").strip() == "data"
    view = json.loads(lab.ok("volume", "inspect", "data"))[0]
    assert view["Name"] == "data" and view["Labels"] == {"app": "db"} and view["Driver"] == "local"
    assert lab.ok("volume", "ls", "-q", "--filter", "label=app=db").split() == ["data"]
    assert "not supported" in lab.refused("volume", "create", "-d", "nfs", "remote")
    assert lab.ok("volume", "ls", "-q").split() == ["data"]
    assert lab.ok("volume", "prune", "-f").strip().endswith("0B")  # named: kept without -a
    assert "data" in lab.ok("volume", "prune", "-f", "-a")
    assert lab.ok("volume", "ls", "-q").split() == []


SDK_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import docker
    client = docker.from_env()
    net = client.networks.create("sdk-net", driver="bridge", labels={"made-by": "sdk"})
    found = client.networks.list(names=["sdk-net"])
    by_label = client.networks.list(filters={"label": "made-by=sdk"})
    images = client.images.list()
    vol = client.volumes.create("sdk-vol", labels={"made-by": "sdk"})
    try:
        client.networks.create("sdk-bad", driver="macvlan")
        refused = None
    except docker.errors.APIError as exc:
        refused = [exc.status_code, exc.explanation]
    print(json.dumps({
        "sdk": docker.__version__,
        "id": net.id, "found": [n.id for n in found], "by_label": [n.name for n in by_label],
        "labels": client.networks.get("sdk-net").attrs["Labels"],
        "images": sorted(t for i in images for t in i.tags),
        "volume": vol.attrs["Labels"], "refused": refused,
        "names": sorted(n.name for n in client.networks.list()),
    }))
    net.remove()
    vol.remove()
    """
)


def test_docker_sdk(lab: Lab) -> None:
    """The Docker SDK for Python that the system Python has (docker-py 5 from Debian, which
    docker-compose uses, where nothing newer is installed)."""
    result = subprocess.run(
        ["/usr/bin/python3", "-c", SDK_SCRIPT],
        env=lab.hyprd.docker_env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["found"] == [seen["id"]] and seen["by_label"] == ["sdk-net"]
    assert seen["labels"] == {"made-by": "sdk"} and seen["volume"] == {"made-by": "sdk"}
    assert "busybox:latest" in seen["images"]
    assert seen["refused"][0] == 400 and "macvlan" in seen["refused"][1]
    assert "bridge" in seen["names"] and "sdk-bad" not in seen["names"]
    assert "sdk-net" not in lab.network_names()


def _docker_api(lab: Lab, method: str, path: str, body: Any = None) -> httpx.Response:
    """A request to the Docker socket as it is (the CLI hides keys and checks input)."""
    transport = httpx.HTTPTransport(uds=str(lab.hyprd.run_dir / "docker.sock"))
    with httpx.Client(transport=transport, base_url="http://docker", timeout=60) as client:
        return client.request(method, path, json=body)


def _image_list(lab: Lab) -> list[dict[str, Any]]:
    return list(_docker_api(lab, "GET", "/v1.44/images/json").json())
