"""Shared fixtures: every kernel object a test makes lives in a namespace the test made.

`netns()` creates a network namespace and deletes it (after killing whatever runs in it)
when the test ends, also when it fails. `Hyprd` runs the real daemon inside one.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hypr.sandbox import BIN, Hyprd, create_netns, delete_netns, in_ns, sh
from tests.oci_images import busybox_layers, debian_image
from tests.registry import Registry, start_registry, start_token_server

__all__ = ["BIN", "Hyprd", "in_ns", "sh"]


@pytest.fixture
def make_netns() -> Iterator[Callable[[], str]]:
    """A factory of namespaces that are all deleted at the end of the test."""
    made: list[str] = []

    def make() -> str:
        made.append(create_netns())
        return made[-1]

    yield make
    for name in reversed(made):
        delete_netns(name)


@pytest.fixture
def netns(make_netns: Callable[[], str]) -> str:
    return make_netns()


@pytest.fixture
def hyprd_factory(make_netns: Callable[[], str], tmp_path: Path) -> Iterator[Callable[..., Hyprd]]:
    daemons: list[Hyprd] = []

    def make(netns: str | None = None, env: dict[str, str] | None = None) -> Hyprd:
        root = tmp_path / f"hyprd{len(daemons)}"
        root.mkdir()
        daemon = Hyprd(netns or make_netns(), root, env)
        daemons.append(daemon)
        daemon.start()
        return daemon

    yield make
    for daemon in daemons:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.stop(signal.SIGKILL)


@pytest.fixture
def hyprd(hyprd_factory: Callable[..., Hyprd]) -> Hyprd:
    return hyprd_factory()


def links(ns: str) -> dict[str, dict[str, Any]]:
    """Links of a namespace read back through netlink: name -> {kind, addresses, up, master}."""
    from pyroute2 import NetNS

    with NetNS(ns) as ipr:
        by_index: dict[int, str] = {}
        result: dict[str, dict[str, Any]] = {}
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME")
            by_index[link["index"]] = name
            info = link.get_attr("IFLA_LINKINFO")
            result[name] = {
                "index": link["index"],
                "kind": info.get_attr("IFLA_INFO_KIND") if info else None,
                "up": bool(link["flags"] & 1),
                "master": link.get_attr("IFLA_MASTER"),
                "alias": link.get_attr("IFLA_IFALIAS"),
                "mac": link.get_attr("IFLA_ADDRESS"),
                "addresses": [],
            }
        for addr in ipr.get_addr(family=2):
            name = by_index[addr["index"]]
            result[name]["addresses"].append(f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}")
        for entry in result.values():
            entry["master"] = by_index.get(entry["master"]) if entry["master"] else None
        return result


def nft_set_elements(ruleset: list[dict[str, Any]], name: str) -> list[Any]:
    for item in ruleset:
        s = item.get("set")
        if s and s["table"] == "hypr" and s["name"] == name:
            return list(s.get("elem", []))
    raise KeyError(name)


@pytest.fixture
def registry_factory(
    make_netns: Callable[[], str], tmp_path: Path
) -> Iterator[Callable[..., Registry]]:
    """Start docker-registry servers (in a new namespace unless one is given), open, with
    htpasswd users (basic auth) or with token users (bearer auth through a token server in
    the same namespace; `public` repositories pull anonymously). All stop at the end."""
    started: list[Registry] = []

    def make(
        netns: str | None = None,
        htpasswd: dict[str, str] | None = None,
        token_users: dict[str, str] | None = None,
        public: tuple[str, ...] = (),
        address: str = "127.0.0.1",
    ) -> Registry:
        ns = netns or make_netns()
        root = tmp_path / f"registry{len(started)}"
        token = None
        if token_users is not None:
            token = start_token_server(ns, root / "token", token_users, public)
        started.append(start_registry(ns, root, htpasswd, token=token, address=address))
        return started[-1]

    yield make
    for registry in started:
        registry.stop()


@pytest.fixture
def registry(registry_factory: Callable[..., Registry]) -> Registry:
    """An open registry (no authentication) on 127.0.0.1:5000 in its own namespace."""
    return registry_factory()


@pytest.fixture(scope="session")
def busybox_image() -> Path:
    """OCI layout of the small two-layer busybox image; tags latest, arm64, multi, armonly."""
    return busybox_layers()


@pytest.fixture(scope="session")
def debian_oci() -> Path:
    """OCI layout (tag latest) of Debian bookworm in three layers: system, Python, app."""
    return debian_image()
