"""`hypr login` / `hypr logout` through a real hyprd against a real registry with htpasswd
authentication, both in the test's namespace; and the credentials file's format."""

from __future__ import annotations

import base64
import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from hypr.cli import credentials
from tests.conftest import Hyprd
from tests.registry import Registry

USER, PASSWORD = "alice", "s3cret-Pa55"


def test_login_checks_stores_0600_and_logout_forgets(
    registry_factory: Callable[..., Registry],
    hyprd_factory: Callable[..., Hyprd],
    tmp_path: Path,
) -> None:
    registry = registry_factory(htpasswd={USER: PASSWORD})
    home = tmp_path / "hypr-config"
    daemon = hyprd_factory(netns=registry.netns, env={"HYPR_CONFIG": str(home)})
    config = home / "config.json"

    bad = daemon.hypr("login", "-u", USER, "--password-stdin", registry.host, input="wrong\n")
    assert bad.returncode == 1
    assert bad.stderr == f"Error: wrong user name or password for {registry.host}\n"
    assert not config.exists()

    good = daemon.hypr("login", "-u", USER, "--password-stdin", registry.host, input=PASSWORD)
    assert good.returncode == 0, good.stderr
    assert good.stdout == "Login Succeeded\n"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    auths = json.loads(config.read_text())["auths"]
    assert auths == {
        registry.host: {"auth": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
    }
    assert PASSWORD not in daemon.log() and "wrong" not in daemon.log()

    assert daemon.ok("logout", registry.host) == f"Removing login credentials for {registry.host}\n"
    assert json.loads(config.read_text())["auths"] == {}
    assert daemon.ok("logout", registry.host) == f"Not logged in to {registry.host}\n"

    insecure = daemon.hypr("login", "-u", USER, "-p", PASSWORD, registry.host)
    assert insecure.returncode == 0
    assert insecure.stdout == "Login Succeeded\n"
    assert insecure.stderr == (
        "WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n"
    )


def test_login_to_a_registry_that_is_down_or_malformed(
    hyprd: Hyprd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_home = tmp_path / "cfg"
    monkeypatch.setenv("HYPR_CONFIG", str(env_home))  # the CLI reads it from the environment
    down = hyprd.hypr("login", "-u", USER, "--password-stdin", "127.0.0.1:5999", input="x")
    bad = hyprd.hypr("login", "-u", USER, "--password-stdin", "bad host!", input="x")
    assert down.returncode == 1
    assert down.stderr == "Error: cannot reach registry 127.0.0.1:5999: connection refused\n"
    assert bad.returncode == 1
    assert bad.stderr == "Error: invalid registry address: 'bad host!'\n"
    assert not env_home.exists()


def test_password_stdin_needs_a_user(hyprd: Hyprd) -> None:
    result = hyprd.hypr("login", "--password-stdin", "127.0.0.1:5000", input="x")
    assert result.returncode == 1
    assert result.stderr == "Error: must provide --username with --password-stdin\n"


def test_docker_config_is_read_and_hub_is_keyed_as_docker_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HYPR_CONFIG", str(tmp_path / "hypr"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    (tmp_path / "docker").mkdir()
    hub = base64.b64encode(b"bob:hub-pass").decode()
    (tmp_path / "docker" / "config.json").write_text(
        json.dumps({"auths": {"https://index.docker.io/v1/": {"auth": hub}}})
    )
    assert credentials.load("docker.io") == credentials.Credentials("bob", "hub-pass")
    assert credentials.load("ghcr.io") is None
    credentials.save("index.docker.io", credentials.Credentials("carol", "c-pass"))
    saved = json.loads((tmp_path / "hypr" / "config.json").read_text())["auths"]
    assert list(saved) == ["https://index.docker.io/v1/"]
    assert credentials.load("registry-1.docker.io") == credentials.Credentials("carol", "c-pass")
    assert "c-pass" not in repr(credentials.load("docker.io"))
    assert credentials.registry_of("nginx") == "docker.io"
    assert credentials.registry_of("127.0.0.1:5000/x:1") == "127.0.0.1:5000"
    assert credentials.registry_of("user/app") == "docker.io"


def test_x_registry_auth_round_trip() -> None:
    from hypr.api.registry import registry_auth
    from hypr.errors import InvalidArgument
    from hypr.images.registry import RegistryAuth

    header = credentials.registry_auth_header(
        "127.0.0.1:5000", credentials.Credentials(USER, PASSWORD)
    )
    assert "=" not in header.rstrip("=") and "+" not in header and "/" not in header
    assert registry_auth(header) == RegistryAuth(USER, PASSWORD)
    assert registry_auth(None) is None and registry_auth("") is None
    with pytest.raises(InvalidArgument) as info:
        registry_auth("not base64 json!")
    assert info.value.message == "X-Registry-Auth is not base64url-encoded JSON"
