"""A real registry (Debian's docker-registry) inside a test's namespace, optionally with
basic (htpasswd) or token (tests/token_server.py) authentication.

Images (tests/oci_images.py) are pushed with skopeo run inside the namespace, and the
registry client runs there too (tests/registry_probe.py), since the test process itself is
in the root namespace.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hypr.sandbox import Hyprd, create_netns, delete_netns, in_ns, sh

PROBE = Path(__file__).with_name("registry_probe.py")
TOKEN_SERVER = Path(__file__).with_name("token_server.py")
TOKEN_SERVICE = "hypr-test-registry"
TOKEN_ISSUER = "hypr-test-token-issuer"


@dataclass
class TokenServer:
    """tests/token_server.py in a namespace: the realm a token-auth registry sends to."""

    netns: str
    root: Path
    port: int
    proc: subprocess.Popen[bytes]
    service: str = TOKEN_SERVICE
    issuer: str = TOKEN_ISSUER

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    @property
    def cert(self) -> Path:
        return self.root / "cert.pem"

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait(10)

    def requests(self) -> list[dict[str, object]]:
        """The token requests it answered, in order: path, scope list, account."""
        lines = (self.root / "requests.log").read_text().splitlines()
        return [json.loads(line) for line in lines]


def start_token_server(
    netns: str, root: Path, users: dict[str, str], public: tuple[str, ...] = (), port: int = 5001
) -> TokenServer:
    """A token server with a fresh RSA key and self-signed certificate; `public`
    repositories may be pulled anonymously."""
    root.mkdir(parents=True, exist_ok=True)
    sh(
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=hypr-test-token",
        "-keyout",
        str(root / "key.pem"),
        "-out",
        str(root / "cert.pem"),
    )
    (root / "users.json").write_text(json.dumps(users))
    (root / "requests.log").write_text("")
    args = [
        "--port",
        str(port),
        "--key",
        str(root / "key.pem"),
        "--cert",
        str(root / "cert.pem"),
        "--users",
        str(root / "users.json"),
        "--issuer",
        TOKEN_ISSUER,
        "--service",
        TOKEN_SERVICE,
        "--log",
        str(root / "requests.log"),
    ]
    for name in public:
        args += ["--public", name]
    with (root / "server.log").open("ab") as log:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, str(TOKEN_SERVER), *args],
            stdout=log,
            stderr=log,
        )
    server = TokenServer(netns, root, port, proc)
    _wait_http(netns, f"http://127.0.0.1:{port}/health", ("404",), proc, root / "server.log")
    (root / "requests.log").write_text("")
    return server


def _wait_http(
    netns: str, url: str, codes: tuple[str, ...], proc: subprocess.Popen[bytes], log: Path
) -> None:
    """Until `url` answers one of `codes` inside the namespace; fails if `proc` dies."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited:\n{log.read_text(errors='replace')}")
        code = in_ns(
            netns, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url, check=False
        ).stdout
        if code in codes:
            return
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{url} did not answer")


@dataclass
class Registry:
    """A running registry: its address inside the namespace, storage and access log."""

    netns: str
    root: Path
    port: int
    proc: subprocess.Popen[bytes]
    token: TokenServer | None = None  # the token server of a bearer-auth registry
    address: str = "127.0.0.1"

    @property
    def host(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def storage(self) -> Path:
        return self.root / "storage"

    @property
    def log_path(self) -> Path:
        return self.root / "registry.log"

    def blob_path(self, digest: str) -> Path:
        """Where the registry keeps a blob's bytes (so tests can corrupt one)."""
        hexd = digest.removeprefix("sha256:")
        return self.storage / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"

    def blob_gets(self) -> list[str]:
        """Digests of the blobs it served with a GET (200), in order, from its access log."""
        pattern = re.compile(r'"GET /v2/\S+/blobs/(sha256:[0-9a-f]{64}) HTTP/[\d.]+" 200 ')
        return pattern.findall(self.log_path.read_text(errors="replace"))

    def push(
        self,
        layout: Path,
        tag: str,
        name: str,
        creds: str | None = None,
        docker_format: bool = False,
        dest_tag: str | None = None,
    ) -> str:
        """Push `oci:layout:tag` (all platforms of an index) as NAME:TAG (or NAME:dest_tag);
        `docker_format` converts it to Docker schema 2 media types. Returns the ref."""
        dest = f"{self.host}/{name}:{dest_tag or tag}"
        args = ["skopeo", "--insecure-policy", "copy", "--all", "--dest-tls-verify=false"]
        if creds:
            args += ["--dest-creds", creds]
        if docker_format:
            args += ["--format", "v2s2"]
        in_ns(self.netns, *args, f"oci:{layout}:{tag}", f"docker://{dest}")
        return dest

    def push_verbatim(self, layout: Path, tag: str, name: str) -> str:
        """Push image `tag` of the layout byte for byte (keeps plain-tar layers, which skopeo
        would gzip); open registries only. Returns the ref."""
        dest = f"{self.host}/{name}:{tag}"
        probe(self.netns, "push", dest, "--layout", str(layout), "--tag", tag)
        return dest

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait(10)
        if self.token is not None:
            self.token.stop()


def start_registry(
    netns: str,
    root: Path,
    htpasswd: dict[str, str] | None = None,
    port: int = 5000,
    token: TokenServer | None = None,
    address: str = "127.0.0.1",
) -> Registry:
    """docker-registry on 127.0.0.1:port inside `netns`, open, with htpasswd (basic auth)
    or with a token server (bearer auth); it dies with the namespace."""
    root.mkdir(parents=True, exist_ok=True)
    auth = ""
    if htpasswd:
        lines = [
            sh("htpasswd", "-nbB", user, password).stdout.strip()
            for user, password in htpasswd.items()
        ]
        (root / "htpasswd").write_text("\n".join(lines) + "\n")
        auth = f"auth:\n  htpasswd:\n    realm: hypr-test\n    path: {root / 'htpasswd'}\n"
    elif token is not None:
        auth = (
            f"auth:\n  token:\n    realm: {token.realm}\n    service: {token.service}\n"
            f"    issuer: {token.issuer}\n    rootcertbundle: {token.cert}\n"
        )
    (root / "config.yml").write_text(
        "version: 0.1\n"
        "log:\n  level: info\n  accesslog:\n    disabled: false\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'storage'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: {address}:{port}\n" + auth
    )
    with (root / "registry.log").open("ab") as log:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, "docker-registry", "serve", str(root / "config.yml")],
            stdout=log,
            stderr=log,
        )
    registry = Registry(netns, root, port, proc, token, address)
    _wait_http(netns, f"http://{registry.host}/v2/", ("200", "401"), proc, registry.log_path)
    return registry


PULL_TIMEOUT = 600  # a bound under the test machine's load, not a sleep


@dataclass
class RegistryLab:
    """A module's daemon and registry (see hyprd_with_registry)."""

    hyprd: Hyprd
    registry: Registry
    root: Path

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.hyprd.hypr("run", *args, timeout=PULL_TIMEOUT)


@contextlib.contextmanager
def hyprd_with_registry(root: Path) -> Iterator[tuple[Hyprd, Registry]]:
    """A hyprd and an open registry in one namespace of their own (a module's lab): the
    daemon in `root`/daemon, the registry in `root`/registry."""
    ns = create_netns()
    try:
        hyprd = Hyprd(ns, root / "daemon")
        hyprd.start()
        registry = start_registry(ns, root / "registry")
        try:
            yield hyprd, registry
        finally:
            registry.stop()
    finally:
        delete_netns(ns)


def probe(netns: str, *args: str, password: str | None = None) -> dict[str, object]:
    """Run the registry client inside the namespace (tests/registry_probe.py) -> its JSON."""
    result = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, str(PROBE), *args],
        input=password or "",
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise AssertionError(f"probe failed: {result.stderr}")
    return dict(json.loads(result.stdout))
