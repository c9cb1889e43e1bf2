"""References with Docker's normalisation, auth challenges and credentials' reprs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hypr.errors import InvalidArgument
from hypr.images.reference import Reference, parse_reference
from hypr.images.registry_auth import RegistryAuth, parse_challenge

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "canonical", "familiar"),
    [
        ("nginx", "docker.io/library/nginx:latest", "nginx:latest"),
        ("nginx:1.25", "docker.io/library/nginx:1.25", "nginx:1.25"),
        ("library/nginx", "docker.io/library/nginx:latest", "nginx:latest"),
        ("docker.io/nginx", "docker.io/library/nginx:latest", "nginx:latest"),
        ("index.docker.io/nginx", "docker.io/library/nginx:latest", "nginx:latest"),
        ("user/app:v1", "docker.io/user/app:v1", "user/app:v1"),
        ("127.0.0.1:5000/x:1", "127.0.0.1:5000/x:1", "127.0.0.1:5000/x:1"),
        ("localhost/ns/name", "localhost/ns/name:latest", "localhost/ns/name:latest"),
        ("ghcr.io/o/r/deep:tag", "ghcr.io/o/r/deep:tag", "ghcr.io/o/r/deep:tag"),
        ("Registry/x", "Registry/x:latest", "Registry/x:latest"),
        ("[::1]:5000/x", "[::1]:5000/x:latest", "[::1]:5000/x:latest"),
        (f"nginx@{DIGEST}", f"docker.io/library/nginx@{DIGEST}", f"nginx@{DIGEST}"),
        (f"nginx:1@{DIGEST}", f"docker.io/library/nginx:1@{DIGEST}", f"nginx:1@{DIGEST}"),
        (
            "a_b__c-d--e.f:T_1.x-y",
            "docker.io/library/a_b__c-d--e.f:T_1.x-y",
            "a_b__c-d--e.f:T_1.x-y",
        ),
    ],
)
def test_docker_normalisation(text: str, canonical: str, familiar: str) -> None:
    ref = parse_reference(text)
    assert str(ref) == canonical
    assert ref.familiar == familiar
    assert parse_reference(str(ref)) == ref
    assert parse_reference(ref.familiar) == ref


def test_parts_and_api_host() -> None:
    ref = parse_reference("nginx")
    assert ref == Reference("docker.io", "library/nginx", "latest", None)
    assert ref.api_host == "registry-1.docker.io"
    assert ref.scope == "repository:library/nginx:pull"
    pinned = parse_reference(f"127.0.0.1:5000/a/b@{DIGEST}")
    assert (pinned.registry, pinned.repository, pinned.tag, pinned.digest) == (
        "127.0.0.1:5000",
        "a/b",
        None,
        DIGEST,
    )
    assert pinned.api_host == "127.0.0.1:5000"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "invalid reference format: ''"),
        (" nginx", "invalid reference format: ' nginx'"),
        ("Nginx", "invalid reference format: repository name must be lowercase: 'Nginx'"),
        ("nginx:", "invalid reference format: bad tag in 'nginx:'"),
        ("nginx:-x", "invalid reference format: bad tag in 'nginx:-x'"),
        ("nginx@sha256:abc", "unsupported digest in 'nginx@sha256:abc': only sha256:<64 hex> is"),
        ("nginx@", "invalid reference format: bad digest in 'nginx@'"),
        ("a//b", "invalid reference format: 'a//b'"),
        ("-a", "invalid reference format: '-a'"),
        ("host:port/x", "invalid reference format: bad registry in 'host:port/x'"),
        ("x/" * 130 + "y", "invalid reference format: name longer than 255"),
    ],
)
def test_malformed_references_get_one_line(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_reference(text)
    assert info.value.message == message


# A `.` in the first of several components would make it a registry (Docker's rule), so
# dots appear only in the last component here.
_component = st.from_regex(r"\A[a-z0-9]{1,5}(?:(?:_|__|-+)[a-z0-9]{1,5}){0,2}\Z")
_last = st.from_regex(r"\A[a-z0-9]{1,5}(?:[._-][a-z0-9]{1,5}){0,2}\Z")


@given(
    st.one_of(st.just(""), st.sampled_from(["127.0.0.1:5000/", "ghcr.io/", "localhost/"])),
    st.lists(_component, max_size=2),
    _last,
    st.one_of(st.none(), st.from_regex(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}\Z")),
)
def test_round_trip(registry: str, path: list[str], last: str, tag: str | None) -> None:
    text = registry + "/".join([*path, last]) + (f":{tag}" if tag else "")
    ref = parse_reference(text)
    assert parse_reference(str(ref)) == ref
    assert parse_reference(ref.familiar) == ref
    assert ref.tag == (tag or "latest")


def test_challenges() -> None:
    bearer = parse_challenge(
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:a/b:pull,push"'
    )
    assert bearer is not None and bearer.scheme == "bearer"
    assert bearer.params == {
        "realm": "https://auth.example/token",
        "service": "registry.example",
        "scope": "repository:a/b:pull,push",
    }
    basic = parse_challenge('Basic realm="hypr-test"')
    assert basic is not None and (basic.scheme, basic.params) == ("basic", {"realm": "hypr-test"})
    assert parse_challenge("") is None


def test_credentials_hide_the_password() -> None:
    auth = RegistryAuth("alice", "hunter2-secret")
    assert "hunter2" not in repr(auth) and "hunter2" not in str(auth)
    assert "alice" in repr(auth)
