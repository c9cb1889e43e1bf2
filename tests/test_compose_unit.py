"""Compose files as pure logic: interpolation, validation paths, normalisation, order."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hypr.compose.files import Options, find_sources, project_name
from hypr.compose.interpolate import interpolate_string, read_env_file
from hypr.compose.loader import load_document
from hypr.compose.project import dependency_order, load_project
from hypr.errors import InvalidArgument

ENV = {"SET": "value", "EMPTY": ""}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${SET}", "value"),
        ("$SET/x", "value/x"),
        ("${UNSET}", ""),
        ("${UNSET:-fallback}", "fallback"),
        ("${EMPTY:-fallback}", "fallback"),
        ("${EMPTY-fallback}", ""),
        ("${UNSET-fallback}", "fallback"),
        ("${SET:+alt}", "alt"),
        ("${EMPTY:+alt}", ""),
        ("${EMPTY+alt}", "alt"),
        ("$$SET", "$SET"),
        ("${UNSET:-${SET}}", "value"),
        ("a ${SET} b ${SET:-x}", "a value b value"),
    ],
)
def test_interpolation(text: str, expected: str) -> None:
    assert interpolate_string(text, ENV) == expected


def test_required_variables() -> None:
    with pytest.raises(InvalidArgument, match=re.escape("services.db.image: need DB")):
        interpolate_string("${DB:?need DB}", ENV, "services.db.image")
    with pytest.raises(InvalidArgument, match="required variable EMPTY"):
        interpolate_string("${EMPTY:?}", ENV)
    assert interpolate_string("${EMPTY?}", ENV) == ""


@given(st.text(alphabet=st.characters(blacklist_characters="$"), max_size=40))
def test_text_without_dollar_is_unchanged(text: str) -> None:
    assert interpolate_string(text, ENV) == text


def test_env_file(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("# comment\nA=1\nexport B=\"two words\"\nC='$raw'\nD=x # note\n")
    assert read_env_file(env) == {"A": "1", "B": "two words", "C": "$raw", "D": "x"}


def three_tier() -> dict[str, Any]:
    return {
        "services": {
            "web": {"image": "busybox", "ports": ["8080:80"], "networks": ["frontend"]},
            "api": {
                "image": "busybox",
                "networks": ["frontend", "backend"],
                "depends_on": {"db": {"condition": "service_healthy"}},
            },
            "db": {
                "image": "busybox",
                "networks": {"backend": {"ipv4_address": "10.90.0.10", "aliases": ["database"]}},
                "healthcheck": {"test": "true", "interval": "1s"},
            },
        },
        "networks": {
            "frontend": None,
            "backend": {
                "internal": True,
                "ipam": {"config": [{"subnet": "10.90.0.0/16", "gateway": "10.90.0.1"}]},
            },
        },
    }


def test_three_tier_normalises_with_compose_names() -> None:
    project = load_project(three_tier(), "shop")
    assert [s.name for s in project.services] == ["db", "api", "web"]
    db = project.service("db")
    assert db.vm_name(1) == "shop-db-1"
    assert [(a.network, a.aliases, a.ipv4_address) for a in db.networks] == [
        ("shop_backend", ["db", "database"], "10.90.0.10")
    ]
    assert project.service("api").depends_on == {"db": "service_healthy"}
    assert project.service("web").ports == ["8080:80"]
    nets = {n.key: n for n in project.networks}
    assert nets["backend"].name == "shop_backend" and nets["backend"].internal
    assert (nets["backend"].subnet, nets["backend"].gateway) == ("10.90.0.0/16", "10.90.0.1")
    assert "default" not in nets  # no service uses it


def test_service_without_networks_joins_project_default() -> None:
    project = load_project({"services": {"one": {"image": "busybox"}}}, "p")
    assert [a.network for a in project.service("one").networks] == ["p_default"]
    assert [n.name for n in project.networks] == ["p_default"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["services"]["web"].update(ports=["x:80"]), "services.web.ports[0]"),
        (
            lambda d: d["services"]["web"].update(ports=[{"target": 80, "protocol": "sctp"}]),
            "services.web.ports[0]",
        ),
        (lambda d: d["services"]["web"].pop("image"), "services.web.image: this key is required"),
        (lambda d: d["services"]["db"].update(depends_on=["api"]), "dependency cycle: "),
        (lambda d: d["services"]["web"].update(networks=["nowhere"]), "undefined network"),
        (
            lambda d: d["services"]["db"]["networks"]["backend"].update(ipv4_address="10.1.0.5"),
            "is not in the subnet 10.90.0.0/16",
        ),
        (lambda d: d["services"]["api"].update(depends_on=["ghost"]), "undefined service"),
        (
            lambda d: d["services"]["web"].update(network_mode="host"),
            "services.web.network_mode: cannot be honoured safely",
        ),
        (
            lambda d: d["networks"].update(frontend={"driver": "overlay"}),
            "networks.frontend.driver: network driver 'overlay' is not supported (use bridge)",
        ),
        (lambda d: d["services"]["web"].update(restart="sometimes"), "services.web.restart"),
        (
            lambda d: d["services"]["db"]["healthcheck"].update(interval="soon"),
            "services.db.healthcheck.interval",
        ),
    ],
)
def test_invalid_files_name_the_path(mutate: Any, message: str) -> None:
    document = three_tier()
    mutate(document)
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        load_project(document, "shop")


def test_unsupported_keys_are_warnings_naming_the_key() -> None:
    document = three_tier()
    document["services"]["db"]["secrets"] = ["password"]
    document["services"]["web"]["stop_grace_period"] = "3s"
    project = load_project(document, "shop")
    assert sorted(project.warnings) == [
        "services.db.secrets: not supported by hypr yet, ignored",
        "services.web.stop_grace_period: not supported by hypr yet, ignored",
    ]


def test_dependency_order_is_stable_and_detects_cycles() -> None:
    assert dependency_order({"a": ["b"], "b": ["c"], "c": []}) == ["c", "b", "a"]
    with pytest.raises(InvalidArgument, match="a -> b -> a"):
        dependency_order({"a": ["b"], "b": ["a"]})


def test_file_discovery_project_name_dotenv_and_env_file(tmp_path: Path) -> None:
    stack = tmp_path / "My.Stack"
    stack.mkdir()
    (stack / ".env").write_text("TAG=1.36\nGREETING=hello\n")
    (stack / "web.env").write_text("FROM_FILE=yes\nGREETING=overridden-by-service\n")
    (stack / "docker-compose.yml").write_text(
        "services:\n  web:\n    image: busybox:${TAG}\n    env_file: web.env\n"
        "    environment:\n      GREETING: ${GREETING}\n"
    )
    sources = find_sources(Options(), stack, {})
    assert [Path(f).name for f in sources.files] == ["docker-compose.yml"]
    document = load_document(sources, str, stack).document
    assert project_name(None, {}, document, sources.project_dir) == "mystack"
    assert project_name("other", {}, document, sources.project_dir) == "other"
    service = load_project(document, "mystack").service("web")
    assert service.image == "busybox:1.36"
    assert sorted(service.env) == ["FROM_FILE=yes", "GREETING=hello"]
    with pytest.raises(InvalidArgument, match="no compose file"):
        find_sources(Options(), tmp_path, {})


def test_compose_refuses_an_environment_entry_without_a_name() -> None:
    document = {"services": {"web": {"image": "busybox", "environment": ["=oops"]}}}
    with pytest.raises(InvalidArgument) as info:
        load_project(document, "p")
    assert info.value.message == (
        "services.web.environment: invalid environment variable '=oops': expected K=V"
    )
