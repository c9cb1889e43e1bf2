"""Sizes read as Docker reads them, by the one parser the CLI and compose share."""

from __future__ import annotations

import pytest

from hypr.compose.project import load_project
from hypr.errors import InvalidArgument
from hypr.units import memory_mib, parse_size


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("268435456", 256 * 2**20),
        ("512", 512),
        ("512b", 512),
        ("4k", 4096),
        ("256m", 256 * 2**20),
        ("256MB", 256 * 2**20),
        ("1g", 2**30),
        ("1.5GiB", 3 * 2**29),
        (" 2G ", 2 * 2**30),
    ],
)
def test_sizes_are_dockers(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "m", "12x", "-1m", "1 g b", "1e9"])
def test_bad_sizes_are_refused(text: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid size"):
        parse_size(text)


def test_memory_in_mib_and_the_hint_for_a_bare_number() -> None:
    assert memory_mib("1g") == 1024 and memory_mib(268435456) == 256
    with pytest.raises(InvalidArgument, match=r"512 is 512 bytes.*did you mean 512m\?"):
        memory_mib("512")
    with pytest.raises(InvalidArgument, match="64m is below the 96 MiB") as info:
        memory_mib("64m")
    assert "did you mean" not in info.value.message


def compose(memory: object) -> dict[str, object]:
    return {"services": {"web": {"image": "busybox", "mem_limit": memory}}}


def test_compose_reads_memory_like_docker_and_names_the_key() -> None:
    assert load_project(compose("268435456"), "p").service("web").memory_mib == 256
    assert load_project(compose(134217728), "p").service("web").memory_mib == 128
    assert load_project(compose("1g"), "p").service("web").memory_mib == 1024
    with pytest.raises(InvalidArgument) as info:
        load_project(compose(512), "p")
    assert info.value.message == (
        "services.web.mem_limit: memory 512 is 512 bytes, below the 96 MiB the guest kernel "
        "needs to boot; did you mean 512m?"
    )
