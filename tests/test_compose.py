"""`hypr compose` end to end: the seeds' three-tier example as microVMs, in a namespace."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from hypr.sandbox import UPSTREAM_ADDRESS, Hyprd, add_upstream, create_netns, delete_netns, in_ns
from tests.conftest import links, nft_set_elements

pytestmark = pytest.mark.vm

THREE_TIER: dict[str, Any] = {
    "services": {
        "web": {
            "image": "busybox",
            "command": [
                "sh",
                "-c",
                "mkdir -p /www && echo hello from web > /www/index.html"
                " && exec httpd -f -p 80 -h /www",
            ],
            "ports": ["8080:80"],
            "networks": ["frontend"],
        },
        "api": {
            "image": "busybox",
            "command": ["sleep", "3600"],
            "networks": ["frontend", "backend"],
            "depends_on": {"db": {"condition": "service_healthy"}},
        },
        "db": {
            "image": "busybox",
            # becomes healthy only after a delay, so the dependency wait is real
            "command": ["sh", "-c", "sleep 3; touch /tmp/ready; exec sleep 3600"],
            "networks": {"backend": {"ipv4_address": "10.90.0.10", "aliases": ["database"]}},
            "healthcheck": {
                "test": ["CMD-SHELL", "test -f /tmp/ready"],
                "interval": "1s",
                "start_interval": "1s",
                "retries": 30,
            },
        },
    },
    "networks": {
        "frontend": None,
        "backend": {"internal": True, "ipam": {"config": [{"subnet": "10.90.0.0/24"}]}},
    },
}


@dataclass
class Stack:
    hyprd: Hyprd
    dir: Path
    upstream: str
    up_output: str

    def compose(self, *args: str) -> Any:
        return self.hyprd.hypr("compose", "-f", str(self.dir / "compose.yaml"), "-p", "shop", *args)

    def exec(self, service: str, *cmd: str) -> Any:
        return self.compose("exec", service, "--", *cmd)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    ns, upstream = create_netns(), create_netns()
    root = tmp_path_factory.mktemp("compose")
    try:
        hyprd = Hyprd(ns, root / "daemon")
        hyprd.start()
        add_upstream(ns, upstream)
        (root / "compose.yaml").write_text(yaml.safe_dump(THREE_TIER))
        result = hyprd.hypr("compose", "-f", str(root / "compose.yaml"), "-p", "shop", "up", "-d")
        assert result.returncode == 0, result.stderr
        yield Stack(hyprd, root, upstream, result.stdout)
    finally:
        delete_netns(ns)
        delete_netns(upstream)


def vm(stack: Stack, service: str) -> dict[str, Any]:
    return json.loads(stack.hyprd.ok("inspect", f"shop-{service}-1"))[0]


def test_up_waits_for_health_and_names_things_like_compose(stack: Stack) -> None:
    lines = stack.up_output.splitlines()
    healthy = next(i for i, line in enumerate(lines) if "shop-db-1" in line and "Healthy" in line)
    api_created = next(i for i, line in enumerate(lines) if "shop-api-1" in line)
    assert healthy < api_created
    names = {
        json.loads(line)["Name"]
        for line in stack.hyprd.ok("network", "ls", "--format", "json").splitlines()
    }
    assert {"shop_frontend", "shop_backend"} <= names
    (backend,) = json.loads(stack.hyprd.ok("network", "inspect", "shop_backend"))
    assert backend["IPAM"]["Config"][0]["Subnet"] == "10.90.0.0/24" and backend["Internal"]
    assert vm(stack, "db")["guest_ip"] == "10.90.0.10"
    ps = stack.compose("ps").stdout
    assert "(healthy)" in next(line for line in ps.splitlines() if "shop-db-1" in line)
    assert "0.0.0.0:8080->80/tcp" in next(line for line in ps.splitlines() if "shop-web-1" in line)


def test_web_is_published_on_8080(stack: Stack) -> None:
    out = in_ns(stack.hyprd.netns, "curl", "-s", "--max-time", "5", "http://127.0.0.1:8080/")
    assert out.stdout == "hello from web\n"


def test_api_reaches_db_and_web_by_name(stack: Stack) -> None:
    result = stack.exec("api", "nslookup", "db")
    assert result.returncode == 0 and "10.90.0.10" in result.stdout
    assert "10.90.0.10" in stack.exec("api", "nslookup", "database").stdout
    assert stack.exec("api", "ping", "-c", "1", "-W", "2", "db").returncode == 0
    page = stack.exec("api", "wget", "-qO-", "http://web/")
    assert page.stdout == "hello from web\n"


def test_web_cannot_resolve_or_reach_db(stack: Stack) -> None:
    assert stack.exec("web", "nslookup", "db").returncode != 0
    assert stack.exec("web", "ping", "-c", "1", "-W", "2", "10.90.0.10").returncode != 0


def test_internal_network_has_no_way_out(stack: Stack) -> None:
    assert stack.exec("db", "ping", "-c", "1", "-W", "2", UPSTREAM_ADDRESS).returncode != 0
    assert stack.exec("web", "ping", "-c", "1", "-W", "2", UPSTREAM_ADDRESS).returncode == 0


def test_config_prints_the_normalised_file(stack: Stack) -> None:
    config = yaml.safe_load(stack.compose("config").stdout)
    assert config["name"] == "shop"
    assert list(config["services"]) == ["db", "api", "web"]
    assert config["networks"]["backend"]["name"] == "shop_backend"


def test_up_again_changes_only_what_changed(stack: Stack) -> None:
    before = {s: vm(stack, s)["id"] for s in ("web", "api", "db")}
    assert stack.compose("up", "-d").returncode == 0
    assert {s: vm(stack, s)["id"] for s in before} == before
    changed = json.loads(json.dumps(THREE_TIER))
    changed["services"]["api"]["command"] = ["sleep", "7200"]
    (stack.dir / "compose.yaml").write_text(yaml.safe_dump(changed))
    try:
        assert stack.compose("up", "-d").returncode == 0
        after = {s: vm(stack, s)["id"] for s in before}
        assert after["web"] == before["web"] and after["db"] == before["db"]
        assert after["api"] != before["api"]
    finally:
        (stack.dir / "compose.yaml").write_text(yaml.safe_dump(THREE_TIER))


def test_zz_down_leaves_nothing_behind(stack: Stack) -> None:
    hyprd = stack.hyprd
    assert stack.compose("down").returncode == 0
    assert hyprd.db_rows("SELECT name FROM vms") == []
    assert [r[0] for r in hyprd.db_rows("SELECT name FROM networks")] == ["bridge"]
    kernel = links(hyprd.netns)
    assert not any(name.startswith(("tap", "vbr1", "vbr2")) for name in kernel)
    ruleset = hyprd.nft()
    assert nft_set_elements(ruleset, "bridges") == ["vbr0"]
    (default,) = json.loads(hyprd.ok("network", "inspect", "bridge"))
    assert [name for name, _ in hyprd.dns_servers()] == [default["Id"][:12]]


# --- failures -------------------------------------------------------------------------


def write(dir: Path, document: dict[str, Any]) -> Path:
    path = dir / "compose.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_bad_files_and_conflicts_change_nothing(hyprd: Hyprd, tmp_path: Path) -> None:
    bad = json.loads(json.dumps(THREE_TIER))
    bad["services"]["web"]["ports"] = ["not-a-port"]
    result = hyprd.hypr("compose", "-f", str(write(tmp_path, bad)), "-p", "bad", "up", "-d")
    assert result.returncode != 0 and "services.web.ports[0]" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

    cyclic = {
        "services": {
            "a": {"image": "busybox", "depends_on": ["b"]},
            "b": {"image": "busybox", "depends_on": ["a"]},
        }
    }
    result = hyprd.hypr("compose", "-f", str(write(tmp_path, cyclic)), "up", "-d")
    assert result.returncode != 0 and "dependency cycle" in result.stderr

    hyprd.ok("network", "create", "taken", "--subnet", "10.90.0.0/24")
    result = hyprd.hypr("compose", "-f", str(write(tmp_path, THREE_TIER)), "-p", "two", "up", "-d")
    assert result.returncode != 0 and "overlaps with network taken" in result.stderr
    assert hyprd.db_rows("SELECT name FROM vms") == []
    assert sorted(r[0] for r in hyprd.db_rows("SELECT name FROM networks")) == ["bridge", "taken"]


def test_failure_half_way_rolls_back(hyprd: Hyprd, tmp_path: Path) -> None:
    hyprd.ok("run", "-d", "--name", "squatter", "-p", "8080:80", "busybox", "sleep", "3600")
    document = {
        "services": {
            "first": {"image": "busybox", "command": ["sleep", "3600"]},
            "web": {"image": "busybox", "ports": ["8080:80"], "depends_on": ["first"]},
        }
    }
    result = hyprd.hypr("compose", "-f", str(write(tmp_path, document)), "-p", "half", "up", "-d")
    assert result.returncode != 0 and "8080" in result.stderr
    assert [r[0] for r in hyprd.db_rows("SELECT name FROM vms")] == ["squatter"]
    assert [r[0] for r in hyprd.db_rows("SELECT name FROM networks")] == ["bridge"]


def test_completed_successfully_condition(hyprd: Hyprd, tmp_path: Path) -> None:
    document = {
        "services": {
            "migrate": {"image": "busybox", "command": ["sh", "-c", "sleep 1; exit 0"]},
            "app": {
                "image": "busybox",
                "command": ["sleep", "3600"],
                "depends_on": {"migrate": {"condition": "service_completed_successfully"}},
            },
        }
    }
    result = hyprd.hypr("compose", "-f", str(write(tmp_path, document)), "-p", "m", "up", "-d")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    exited = next(i for i, line in enumerate(lines) if "m-migrate-1" in line and "Exited" in line)
    assert exited < next(i for i, line in enumerate(lines) if "m-app-1" in line)
    assert (
        hyprd.hypr("compose", "-f", str(tmp_path / "compose.yaml"), "-p", "m", "down").returncode
        == 0
    )
