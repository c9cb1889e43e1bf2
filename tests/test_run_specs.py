"""The image config merged into a run (Docker's override rules) and compose's
`pull_policy`, without a VM: what the e2e tests in test_run_images.py see in a guest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hypr.compose.project import ServicePlan, load_project
from hypr.daemon.requests import RunRequest
from hypr.daemon.specs import build_spec, merge_env
from hypr.errors import InvalidArgument
from hypr.images.config import ImageConfig
from hypr.images.store import Image
from hypr.state.vms import VmSpec

CONFIG = ImageConfig(
    entrypoint=["/bin/sh", "-c"],
    cmd=["echo hi"],
    env=["PATH=/bin", "GREETING=hello"],
    workdir="/data",
    user="app",
    exposed_ports=["53/udp", "8080/tcp"],
    labels={"a": "image", "b": "image"},
    stop_signal="SIGQUIT",
)
IMAGE = Image(
    id="sha256:" + "0" * 64, repo_tags=["x:1"], repo_digests=[], layers=(Path("/l"),),
    config=CONFIG, size=1, created="", builtin=False,
)  # fmt: skip


def spec(**request: Any) -> VmSpec:
    return build_spec(RunRequest(image="x:1", networks=[], **request), IMAGE)


@pytest.mark.parametrize(
    ("request_", "argv"),
    [
        ({}, ["/bin/sh", "-c", "echo hi"]),
        ({"command": ["ls"]}, ["/bin/sh", "-c", "ls"]),  # Cmd replaced, Entrypoint kept
        ({"entrypoint": ["/bin/echo"]}, ["/bin/echo"]),  # the image's Cmd dropped
        ({"entrypoint": ["/bin/echo"], "command": ["a"]}, ["/bin/echo", "a"]),
        ({"entrypoint": [], "command": ["ls", "-l"]}, ["ls", "-l"]),  # --entrypoint ""
    ],
)
def test_entrypoint_and_cmd_rules(request_: dict[str, Any], argv: list[str]) -> None:
    assert spec(**request_).argv == argv


def test_no_command_at_all_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="no command"):
        spec(entrypoint=[])


def test_image_defaults_and_their_overrides() -> None:
    default = spec()
    assert default.env == ["PATH=/bin", "GREETING=hello"]
    assert (default.workdir, default.user, default.stop_signal) == ("/data", "app", "SIGQUIT")
    assert default.exposed_ports == ["53/udp", "8080/tcp"]
    assert default.labels == {"a": "image", "b": "image"}
    own = spec(
        env=["GREETING=bye", "NEW=1"], workdir="/tmp", user="0", stop_signal="SIGINT",
        labels={"b": "mine"},
    )  # fmt: skip
    assert own.env == ["PATH=/bin", "GREETING=bye", "NEW=1"]
    assert (own.workdir, own.user, own.stop_signal) == ("/tmp", "0", "SIGINT")
    assert own.labels == {"a": "image", "b": "mine"}


keys = st.sampled_from(["A", "B", "C", "PATH"])
entries = st.lists(st.tuples(keys, st.text("xyz", max_size=3)).map("=".join), max_size=6)


@given(entries, entries)
def test_env_merge_keeps_one_entry_per_key_the_last_wins(image: list[str], own: list[str]) -> None:
    merged = merge_env(image, own)
    names = [e.partition("=")[0] for e in merged]
    assert len(names) == len(set(names))
    for entry in merged:
        key = entry.partition("=")[0]
        assert entry == [e for e in [*image, *own] if e.partition("=")[0] == key][-1]


def project(policy: str) -> ServicePlan:
    document = {"services": {"a": {"image": "busybox", "pull_policy": policy}}}
    return load_project(document, "p").services[0]


@pytest.mark.parametrize(
    ("given_", "policy"),
    [("always", "always"), ("missing", "missing"), ("never", "never"),
     ("if_not_present", "missing")],
)  # fmt: skip
def test_pull_policy(given_: str, policy: str) -> None:
    assert project(given_).pull_policy == policy


@pytest.mark.parametrize("bad", ["build", "daily", "sometimes"])
def test_unsupported_pull_policies_are_refused(bad: str) -> None:
    with pytest.raises(InvalidArgument, match=r"services\.a\.pull_policy: .*not supported"):
        project(bad)


def test_pull_policy_is_no_part_of_the_config_hash() -> None:
    assert project("always").config_hash == project("never").config_hash
