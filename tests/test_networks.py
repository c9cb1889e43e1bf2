"""Networks end to end: CLI -> API -> bridges, addresses and nftables in a test namespace."""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from hypr.errors import InvalidArgument
from hypr.network.manager import parse_subnet
from tests.conftest import BIN, Hyprd, in_ns, links, nft_set_elements


def network_names(hyprd: Hyprd) -> list[str]:
    return [
        json.loads(line)["Name"]
        for line in hyprd.ok("network", "ls", "--format", "json").splitlines()
    ]


def test_default_network_is_created_on_first_start(hyprd: Hyprd) -> None:
    kernel = links(hyprd.netns)
    assert kernel["vbr0"]["kind"] == "bridge"
    assert kernel["vbr0"]["up"]
    assert kernel["vbr0"]["addresses"] == ["10.88.0.1/16"]
    ruleset = hyprd.nft()
    assert nft_set_elements(ruleset, "bridges") == ["vbr0"]
    subnets = nft_set_elements(ruleset, "masquerade_subnets")
    assert subnets == [{"prefix": {"addr": "10.88.0.0", "len": 16}}]
    assert in_ns(hyprd.netns, "cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip() == "1"

    out = hyprd.ok("network", "ls").splitlines()
    assert re.match(r"^NETWORK ID\s+NAME\s+DRIVER\s+SCOPE$", out[0])
    assert re.match(r"^[0-9a-f]{12}\s+bridge\s+bridge\s+local$", out[1])


def test_create_inspect_ls_rm(hyprd: Hyprd) -> None:
    net_id = hyprd.ok("network", "create", "mynet", "--label", "team=web").strip()
    assert re.fullmatch(r"[0-9a-f]{64}", net_id)
    (view,) = json.loads(hyprd.ok("network", "inspect", "mynet"))
    assert view["Name"] == "mynet"
    assert view["Id"] == net_id
    assert view["Driver"] == "bridge" and view["Scope"] == "local"
    assert view["Internal"] is False
    assert view["IPAM"]["Config"] == [{"Subnet": "10.89.0.0/16", "Gateway": "10.89.0.1"}]
    assert view["Options"] == {"com.docker.network.bridge.name": "vbr1"}
    assert view["Labels"] == {"team": "web"}
    assert view["Containers"] == {}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", view["Created"])
    # inspect by id prefix too, several at once
    both = json.loads(hyprd.ok("network", "inspect", net_id[:12], "bridge"))
    assert [v["Name"] for v in both] == ["mynet", "bridge"]

    kernel = links(hyprd.netns)
    assert kernel["vbr1"]["addresses"] == ["10.89.0.1/16"]
    assert kernel["vbr1"]["alias"] == f"hypr:network:{net_id}"
    assert "vbr1" in nft_set_elements(hyprd.nft(), "bridges")

    second = json.loads(hyprd.ok("network", "inspect", hyprd.ok("network", "create", "n2").strip()))
    assert second[0]["IPAM"]["Config"][0]["Subnet"] == "10.90.0.0/16"
    assert second[0]["Options"]["com.docker.network.bridge.name"] == "vbr2"

    assert hyprd.ok("network", "ls", "-q").split() == [
        line.split()[0] for line in hyprd.ok("network", "ls").splitlines()[1:]
    ]
    assert hyprd.ok("network", "rm", "mynet", "n2").split() == ["mynet", "n2"]
    kernel = links(hyprd.netns)
    assert "vbr1" not in kernel and "vbr2" not in kernel
    ruleset = hyprd.nft()
    assert nft_set_elements(ruleset, "bridges") == ["vbr0"]
    assert len(nft_set_elements(ruleset, "masquerade_subnets")) == 1
    assert network_names(hyprd) == ["bridge"]


def test_internal_network_and_custom_subnet(hyprd: Hyprd) -> None:
    hyprd.ok(
        "network",
        "create",
        "back",
        "--internal",
        "--subnet",
        "10.60.0.0/24",
        "--gateway",
        "10.60.0.254",
    )
    (view,) = json.loads(hyprd.ok("network", "inspect", "back"))
    assert view["Internal"] is True
    assert view["IPAM"]["Config"] == [{"Subnet": "10.60.0.0/24", "Gateway": "10.60.0.254"}]
    assert links(hyprd.netns)["vbr1"]["addresses"] == ["10.60.0.254/24"]
    ruleset = hyprd.nft()
    assert nft_set_elements(ruleset, "internal_bridges") == ["vbr1"]
    # an internal subnet is never masqueraded
    assert {"prefix": {"addr": "10.60.0.0", "len": 24}} not in nft_set_elements(
        ruleset, "masquerade_subnets"
    )


def test_auto_subnet_skips_routes_of_the_namespace(hyprd: Hyprd) -> None:
    in_ns(hyprd.netns, "ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1")
    in_ns(hyprd.netns, "ip", "addr", "add", "10.89.3.1/24", "dev", "uplink0")
    in_ns(hyprd.netns, "ip", "link", "set", "uplink0", "up")
    hyprd.ok("network", "create", "auto")
    (view,) = json.loads(hyprd.ok("network", "inspect", "auto"))
    assert view["IPAM"]["Config"][0]["Subnet"] == "10.90.0.0/16"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["network", "create", "x", "--subnet", "10.70.0.0/33"], "invalid subnet"),
        (["network", "create", "x", "--subnet", "garbage"], "invalid subnet"),
        (["network", "create", "x", "--subnet", "10.70.0.1/16"], "it should be 10.70.0.0/16"),
        (
            ["network", "create", "x", "--subnet", "10.70.0.0/16", "--gateway", "10.71.0.1"],
            "not in subnet",
        ),
        (
            ["network", "create", "x", "--subnet", "10.70.0.0/16", "--gateway", "10.70.0.0"],
            "network or broadcast",
        ),
        (
            ["network", "create", "x", "--subnet", "10.70.0.0/16", "--gateway", "10.70.255.255"],
            "network or broadcast",
        ),
        (["network", "create", "x", "--subnet", "10.88.128.0/20"], "overlaps with network bridge"),
        (["network", "create", "bridge"], "already exists"),
        (["network", "create", "bad name!"], "invalid network name"),
        (["network", "create", "x", "--driver", "macvlan"], "not supported"),
        (["network", "create", "x", "--gateway", "10.70.0.1"], "--gateway needs --subnet"),
        (["network", "rm", "bridge"], "default network"),
        (["network", "rm", "nosuch"], "not found"),
        (["network", "inspect", "nosuch"], "not found"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(
    hyprd: Hyprd, args: list[str], message: str
) -> None:
    before = (links(hyprd.netns), hyprd.nft(), hyprd.db_rows("SELECT * FROM networks"))
    result = hyprd.hypr(*args)
    assert result.returncode != 0
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    after = (links(hyprd.netns), hyprd.nft(), hyprd.db_rows("SELECT * FROM networks"))
    assert after == before


@pytest.mark.parametrize(
    ("subnet", "what"),
    [
        ("127.0.0.0/8", "127.0.0.0/8, the loopback range"),
        ("127.1.0.0/16", "the loopback range"),
        ("224.0.0.0/24", "the multicast range"),
        ("239.1.0.0/16", "the multicast range"),
        ("169.254.0.0/16", "the link-local range"),
        ("0.0.0.0/8", "'this network'"),
        ("0.0.0.0/0", "'this network'"),
        ("240.0.0.0/4", "the reserved range"),
        ("255.255.255.0/24", "the reserved range"),
    ],
)
def test_parse_subnet_refuses_reserved_ranges(subnet: str, what: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        parse_subnet(subnet)
    assert refused.value.message.startswith(f"invalid subnet {subnet}: it overlaps ")
    assert what in refused.value.message and "\n" not in refused.value.message


def test_subnets_of_the_host_are_refused(hyprd: Hyprd) -> None:
    in_ns(hyprd.netns, "ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1")
    in_ns(hyprd.netns, "ip", "addr", "add", "10.89.3.1/24", "dev", "uplink0")
    in_ns(hyprd.netns, "ip", "link", "set", "uplink0", "up")
    in_ns(hyprd.netns, "ip", "route", "add", "10.91.0.0/16", "via", "10.89.3.2")
    in_ns(hyprd.netns, "ip", "addr", "add", "10.92.0.9/32", "dev", "uplink0")
    before = (links(hyprd.netns), hyprd.nft(), hyprd.db_rows("SELECT * FROM networks"))
    for subnet, message in (
        ("10.89.0.0/16", "subnet 10.89.0.0/16 overlaps address 10.89.3.1/24 of the host"),
        ("10.91.4.0/24", "subnet 10.91.4.0/24 overlaps the host's route to 10.91.0.0/16"),
        ("10.92.0.0/24", "subnet 10.92.0.0/24 overlaps address 10.92.0.9/32 of the host"),
        ("127.0.0.0/8", "invalid subnet 127.0.0.0/8: it overlaps 127.0.0.0/8, the loopback"),
        ("224.0.0.0/24", "it overlaps 224.0.0.0/4, the multicast range"),
    ):
        result = hyprd.hypr("network", "create", "x", "--subnet", subnet)
        assert result.returncode != 0
        assert message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    with hyprd.api() as api:
        loopback = api.post(
            "/networks/create", json={"Name": "x", "IPAM": {"Config": [{"Subnet": "127.0.0.0/8"}]}}
        )
        routed = api.post(
            "/networks/create", json={"Name": "x", "IPAM": {"Config": [{"Subnet": "10.91.0.0/24"}]}}
        )
    assert loopback.status_code == 400 and "loopback" in loopback.json()["message"]
    assert routed.status_code == 409 and "route" in routed.json()["message"]
    assert (links(hyprd.netns), hyprd.nft(), hyprd.db_rows("SELECT * FROM networks")) == before
    hyprd.ok("network", "create", "fine", "--subnet", "10.93.0.0/24")


def test_api_answers_bad_requests_with_4xx_json(hyprd: Hyprd) -> None:
    with hyprd.api() as api:
        cases = [
            ({"Name": "x", "IPAM": {"Config": [{"Subnet": "nope"}]}}, 400),
            ({"Name": "bridge"}, 409),
            ({"NoName": 1}, 400),
            ({"Name": "x", "IPAM": {"Config": [{"Subnet": "10.88.0.0/24"}]}}, 409),
        ]
        for body, status in cases:
            response = api.post("/networks/create", json=body)
            assert response.status_code == status, response.text
            assert isinstance(response.json()["message"], str)
        response = api.post("/networks/create", content=b"{not json")
        assert response.status_code == 400 and "message" in response.json()
        assert api.delete("/networks/nosuch").status_code == 404


def test_state_survives_restart_and_kernel_is_reconciled(hyprd: Hyprd) -> None:
    net_id = hyprd.ok("network", "create", "keep", "--subnet", "10.77.0.0/24").strip()
    hyprd.restart()
    assert network_names(hyprd) == ["bridge", "keep"]
    assert json.loads(hyprd.ok("network", "inspect", "keep"))[0]["Id"] == net_id

    # A crash, then somebody deletes the bridge and leaves a stale hypr bridge behind.
    hyprd.stop(signal.SIGKILL)
    in_ns(hyprd.netns, "ip", "link", "del", "vbr1")
    in_ns(hyprd.netns, "ip", "link", "add", "vbr9", "type", "bridge")
    in_ns(hyprd.netns, "ip", "link", "set", "vbr9", "alias", "hypr:network:" + "0" * 64)
    in_ns(hyprd.netns, "nft", "add element inet hypr bridges { vbr9 }")
    hyprd.start()
    kernel = links(hyprd.netns)
    assert kernel["vbr1"]["addresses"] == ["10.77.0.1/24"] and kernel["vbr1"]["up"]
    assert "vbr9" not in kernel
    assert sorted(nft_set_elements(hyprd.nft(), "bridges")) == ["vbr0", "vbr1"]


def test_two_daemons_in_two_namespaces_do_not_disturb_each_other(
    hyprd_factory: Callable[..., Hyprd],
) -> None:
    first, second = hyprd_factory(), hyprd_factory()
    first.ok("network", "create", "only-first")
    assert network_names(second) == ["bridge"]
    assert "vbr1" not in links(second.netns)
    second.stop()
    assert network_names(first) == ["bridge", "only-first"]


def test_second_daemon_on_same_run_dir_refuses_to_start(hyprd: Hyprd) -> None:
    result = in_ns(
        hyprd.netns,
        "env",
        f"HYPR_RUN_DIR={hyprd.run_dir}",
        f"HYPR_DATA_DIR={hyprd.data_dir}",
        str(BIN / "hyprd"),
        check=False,
    )
    assert result.returncode != 0
    assert "already running" in result.stderr


def test_cli_without_daemon_says_so_in_one_line(hyprd: Hyprd) -> None:
    hyprd.stop()
    for args in (["network", "ls"], ["info"], ["network", "create", "x"]):
        result = hyprd.hypr(*args)
        assert result.returncode == 1
        assert "is hyprd running?" in result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_version_and_info(hyprd: Hyprd) -> None:
    out = hyprd.ok("version")
    assert "Client: hypr 0.1.0" in out and "Server: hyprd 0.1.0" in out
    hyprd.ok("network", "create", "extra")
    info = dict(line.split(": ", 1) for line in hyprd.ok("info").splitlines())
    assert info["Networks"] == "2"
    assert info["Data Dir"] == str(hyprd.data_dir)


def test_prune_removes_unused_networks_only(hyprd: Hyprd) -> None:
    hyprd.ok("network", "create", "a")
    hyprd.ok("network", "create", "b")
    out = hyprd.ok("network", "prune", "-f")
    assert out.splitlines() == ["Deleted Networks:", "a", "b"]
    assert network_names(hyprd) == ["bridge"]
    assert set(links(hyprd.netns)) == {"lo", "vbr0"}


def test_prune_without_force_asks(hyprd: Hyprd) -> None:
    hyprd.ok("network", "create", "a")
    result = hyprd.hypr("network", "prune", input="n\n")
    assert result.returncode != 0
    assert network_names(hyprd) == ["bridge", "a"]


def test_concurrent_creates_get_distinct_subnets_and_bridges(hyprd: Hyprd) -> None:
    def create(i: int) -> int:
        with hyprd.api() as api:
            return api.post("/networks/create", json={"Name": f"c{i}"}).status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(create, range(12))) == [201] * 12
    views = json.loads(hyprd.ok("network", "inspect", *[f"c{i}" for i in range(12)]))
    subnets = [v["IPAM"]["Config"][0]["Subnet"] for v in views]
    bridges = [v["Options"]["com.docker.network.bridge.name"] for v in views]
    assert len(set(subnets)) == 12 and len(set(bridges)) == 12
    kernel = links(hyprd.netns)
    assert all(kernel[b]["kind"] == "bridge" for b in bridges)
