"""The registry client against Debian's docker-registry in a namespace the test made.

The client runs inside the namespace (tests/registry_probe.py under `ip netns exec`); the
registry's storage and access log are read back from the host side.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from hypr.images import oci
from tests.conftest import in_ns
from tests.registry import PROBE, Registry, probe

USERS = {"alice": "s3cret-Pa55"}


def test_resolve_and_stream_a_multi_layer_image(registry: Registry, busybox_image: Path) -> None:
    ref = registry.push(busybox_image, "latest", "team/bb")
    got = probe(registry.netns, "resolve", ref, "--blobs")
    assert got["ok"], got
    assert got["reference"] == ref
    assert got["media_type"] == "application/vnd.oci.image.manifest.v1+json"
    assert got["digest"] == got["manifest_digest"]
    layers = got["layers"]
    assert isinstance(layers, list) and len(layers) == 2
    blobs = got["blobs"]
    assert isinstance(blobs, dict)
    for layer in layers:
        assert blobs[layer["digest"]] == {"sha256": layer["digest"], "size": layer["size"]}
    config = got["config"]
    assert isinstance(config, dict)
    assert config["config"]["Entrypoint"] == ["/bin/sh", "-c"]
    assert config["config"]["User"] == "app"
    assert len(config["rootfs"]["diff_ids"]) == 2
    served = registry.blob_gets()
    assert {layer["digest"] for layer in layers} <= set(served)
    assert got["config_digest"] in served


def test_an_index_gives_the_host_platform_or_the_one_asked(
    registry: Registry, busybox_image: Path
) -> None:
    latest = probe(registry.netns, "resolve", registry.push(busybox_image, "latest", "bb"))
    ref = registry.push(busybox_image, "multi", "bb")
    index = json.loads((busybox_image / "index.json").read_text())
    index_digest = next(
        m["digest"]
        for m in index["manifests"]
        if m["annotations"]["org.opencontainers.image.ref.name"] == "multi"
    )
    amd64 = probe(registry.netns, "resolve", ref)
    assert amd64["digest"] == index_digest  # the repo digest is the index's
    assert amd64["manifest_digest"] == latest["manifest_digest"]
    assert amd64["config"]["architecture"] == "amd64"  # type: ignore[index]
    arm64 = probe(registry.netns, "resolve", ref, "--platform", "linux/arm64")
    assert arm64["config"]["architecture"] == "arm64"  # type: ignore[index]
    assert len(arm64["layers"]) == 1  # type: ignore[arg-type]


def test_an_index_for_another_platform_only_is_refused(
    registry: Registry, busybox_image: Path
) -> None:
    ref = registry.push(busybox_image, "armonly", "bb")
    got = probe(registry.netns, "resolve", ref)
    assert got == {
        "ok": False,
        "error": "PlatformNotFound",
        "status": 404,
        "message": f"no linux/amd64 image in {ref}, it has linux/arm64",
    }


def test_unknown_repository_and_tag(registry: Registry, busybox_image: Path) -> None:
    registry.push(busybox_image, "latest", "bb")
    for ref in (f"{registry.host}/bb:nope", f"{registry.host}/nothing:1"):
        got = probe(registry.netns, "resolve", ref)
        assert got["error"] == "ImageNotFound" and got["status"] == 404, got
        assert got["message"] == f"manifest for {ref} not found: manifest unknown"
    pinned = f"{registry.host}/bb@sha256:{'0' * 64}"
    assert probe(registry.netns, "resolve", pinned)["status"] == 404


def test_basic_auth_right_wrong_and_missing(
    registry_factory: Callable[..., Registry], busybox_image: Path
) -> None:
    registry = registry_factory(htpasswd=USERS)
    ref = registry.push(busybox_image, "latest", "bb", creds="alice:" + USERS["alice"])
    ns = registry.netns
    good = probe(ns, "resolve", ref, "--blobs", "--user", "alice", password=USERS["alice"])
    assert good["ok"], good
    assert probe(ns, "login", registry.host, "--user", "alice", password=USERS["alice"]) == {
        "ok": True
    }
    for args in (["resolve", ref], ["login", registry.host]):
        wrong = probe(ns, *args, "--user", "alice", password="not-" + USERS["alice"])
        assert wrong == {
            "ok": False,
            "error": "Unauthorized",
            "status": 401,
            "message": f"wrong user name or password for {registry.host}",
        }
        missing = probe(ns, *args)
        assert missing["status"] == 401
        assert missing["message"] == (
            f"authentication required for {registry.host}: run `hypr login {registry.host}`"
        )
    assert USERS["alice"] not in registry.log_path.read_text()


def test_a_registry_that_is_down(registry: Registry, busybox_image: Path) -> None:
    ref = registry.push(busybox_image, "latest", "bb")
    registry.stop()
    got = probe(registry.netns, "resolve", ref)
    assert got["error"] == "RegistryUnavailable" and got["status"] == 502, got
    message = got["message"]
    assert isinstance(message, str) and "\n" not in message
    assert message.startswith(f"cannot reach registry {registry.host}: ")
    assert "refused" in message.lower()


def test_a_corrupted_config_blob_is_refused(registry: Registry, busybox_image: Path) -> None:
    ref = registry.push(busybox_image, "latest", "bb")
    config_digest = probe(registry.netns, "resolve", ref)["config_digest"]
    assert isinstance(config_digest, str)
    stored = registry.blob_path(config_digest)
    data = stored.read_bytes()
    stored.write_bytes(data.replace(b'"User":"app"', b'"User":"bad"'))
    got = probe(registry.netns, "resolve", ref)
    assert got["error"] == "DigestMismatch" and got["status"] == 502, got
    assert got["message"] == f"config of {ref} does not match its digest {config_digest}"


@pytest.mark.parametrize("insecure", [False, True])
def test_https_unless_loopback_or_listed(insecure: bool) -> None:
    from hypr.images.registry import RegistryClient

    listed = ["registry.lan:5000"] if insecure else []
    client = RegistryClient(insecure=listed)
    assert client.base_url("127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert client.base_url("localhost:5000") == "http://localhost:5000"
    assert client.base_url("[::1]:5000") == "http://[::1]:5000"
    assert client.base_url("registry-1.docker.io") == "https://registry-1.docker.io"
    scheme = "http" if insecure else "https"
    assert client.base_url("registry.lan:5000") == f"{scheme}://registry.lan:5000"


def test_token_auth_anonymous_and_with_credentials(
    registry_factory: Callable[..., Registry], busybox_image: Path
) -> None:
    registry = registry_factory(token_users=USERS, public=("pub",))
    token = registry.token
    assert token is not None
    creds = "alice:" + USERS["alice"]
    public = registry.push(busybox_image, "latest", "pub", creds=creds)
    private = registry.push(busybox_image, "latest", "priv", creds=creds)
    ns, start = registry.netns, len(token.requests())

    anonymous = probe(ns, "resolve", public, "--blobs")
    assert anonymous["ok"], anonymous
    # One token for the scope serves the manifest, the config and both layers.
    assert token.requests()[start:] == [
        {"path": "/token", "scope": ["repository:pub:pull"], "account": None}
    ]
    assert probe(ns, "resolve", private)["message"] == (
        f"pull access denied for {registry.host}/priv, repository does not exist "
        f"or may require `hypr login {registry.host}`"
    )
    user = ["--user", "alice"]
    assert probe(ns, "resolve", private, "--blobs", *user, password=USERS["alice"])["ok"]
    assert probe(ns, "login", registry.host, *user, password=USERS["alice"]) == {"ok": True}
    for args in (["resolve", private], ["login", registry.host]):
        wrong = probe(ns, *args, *user, password="nope")
        assert (wrong["status"], wrong["message"]) == (
            401,
            f"wrong user name or password for {registry.host}",
        )


@pytest.mark.parametrize(
    ("tag", "docker_format", "manifest_type", "layer_type"),
    [
        ("latest", True, oci.DOCKER_MANIFEST, oci.DOCKER_LAYER_GZIP),
        ("tar", False, oci.OCI_MANIFEST, oci.OCI_LAYER),
        ("zstd", False, oci.OCI_MANIFEST, oci.OCI_LAYER_ZSTD),
    ],
)
def test_docker_schema_2_and_every_layer_compression(
    registry: Registry,
    busybox_image: Path,
    tag: str,
    docker_format: bool,
    manifest_type: str,
    layer_type: str,
) -> None:
    if docker_format:
        ref = registry.push(busybox_image, tag, "bb", docker_format=True)
    else:
        ref = registry.push_verbatim(busybox_image, tag, "bb")
    got = probe(registry.netns, "resolve", ref, "--blobs")
    assert got["media_type"] == manifest_type, got
    layers = got["layers"]
    assert isinstance(layers, list) and [d["media_type"] for d in layers] == [layer_type] * 2
    blobs = got["blobs"]
    assert isinstance(blobs, dict)
    assert all(blobs[d["digest"]]["sha256"] == d["digest"] for d in layers)


def test_a_debian_image_of_tens_of_megabytes(registry: Registry, debian_oci: Path) -> None:
    ref = registry.push(debian_oci, "latest", "library/debian")
    got = probe(registry.netns, "resolve", ref, "--blobs")
    layers = got["layers"]
    assert isinstance(layers, list) and len(layers) == 3, got
    blobs = got["blobs"]
    assert isinstance(blobs, dict)
    for layer in layers:
        assert blobs[layer["digest"]] == {"sha256": layer["digest"], "size": layer["size"]}
    assert sum(layer["size"] for layer in layers) > 10 << 20
    assert got["config"]["config"]["Cmd"] == ["python3", "/app/hello.py"]  # type: ignore[index]


def test_plain_http_off_loopback_only_when_listed_insecure(
    make_netns: Callable[[], str],
    registry_factory: Callable[..., Registry],
    busybox_image: Path,
) -> None:
    ns = make_netns()
    in_ns(ns, "ip", "addr", "add", "10.77.0.1/32", "dev", "lo")
    registry = registry_factory(netns=ns, address="10.77.0.1")
    ref = registry.push(busybox_image, "latest", "bb")
    refused = probe(ns, "resolve", ref)
    assert refused == {
        "ok": False,
        "error": "RegistryUnavailable",
        "status": 502,
        "message": f"cannot reach registry {registry.host}: TLS handshake failed (a registry "
        "that speaks plain HTTP must be listed in HYPR_INSECURE_REGISTRIES)",
    }
    assert probe(ns, "resolve", ref, "--insecure", registry.host)["ok"]


def test_a_registry_killed_during_a_download(registry: Registry, debian_oci: Path) -> None:
    ref = registry.push(debian_oci, "latest", "debian")
    client = subprocess.Popen(
        ["ip", "netns", "exec", registry.netns, sys.executable, str(PROBE), "interrupted", ref],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert client.stdin is not None and client.stdout is not None
    try:
        assert client.stdout.readline() == "READY\n"
        registry.stop()
        client.stdin.write("go on\n")
        client.stdin.flush()
        got = json.loads(client.stdout.readline())
    finally:
        client.kill()
        client.wait()
    assert got["error"] == "RegistryUnavailable" and got["status"] == 502, got
    message = got["message"]
    assert isinstance(message, str) and "\n" not in message
    assert message.startswith("download of sha256:") and " from 127.0.0.1:5000 failed: " in message
