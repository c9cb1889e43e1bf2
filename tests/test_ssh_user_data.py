"""The issue's SSH scenario with real parts: a Debian image with an SSH server (dropbear,
from Debian's packages), the key from cloud-init user data, reached through the SSH pool
with the real `ssh` client; then the VM sleeps when idle and an SSH connection wakes it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hypr.sandbox import Hyprd, in_ns, wait_for
from tests.oci_images import debian_ssh_image
from tests.registry import PULL_TIMEOUT, Registry, hyprd_with_registry

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Hyprd, Registry, Path]]:
    root = tmp_path_factory.mktemp("ssh")
    with hyprd_with_registry(root) as (hyprd, registry):
        yield hyprd, registry, root


def ssh(hyprd: Hyprd, key: Path, port: int, command: str) -> subprocess.CompletedProcess[str]:
    return in_ns(
        hyprd.netns, "ssh", "-i", str(key), "-p", str(port), "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "ConnectTimeout=120", "root@127.0.0.1", command, check=False,
    )  # fmt: skip


def test_ssh_with_a_key_from_user_data_through_the_pool_and_a_wake(
    lab: tuple[Hyprd, Registry, Path],
) -> None:
    hyprd, registry, root = lab
    ref = registry.push(debian_ssh_image(), "latest", "debian/ssh")
    key = root / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    user_data = root / "user-data.yaml"
    public = key.with_suffix(".pub").read_text().strip()
    user_data.write_text(f"#cloud-config\nssh_authorized_keys:\n  - {public}\n")
    run = hyprd.hypr("run", "-d", "--name", "sshd", "--ssh", "--idle-timeout", "3s",
                     "--user-data", str(user_data), ref, timeout=PULL_TIMEOUT)  # fmt: skip
    assert run.returncode == 0, run.stderr
    port = hyprd.inspect("sshd")["ssh_port"]
    wait_for(lambda: ssh(hyprd, key, port, "true").returncode == 0, timeout=120)
    answer = ssh(hyprd, key, port, "cat /etc/debian_version; stat -c %a /root/.ssh")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.split()[1] == "700"
    wrong = root / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
    assert ssh(hyprd, wrong, port, "true").returncode != 0  # only the user data's key

    wait_for(lambda: hyprd.inspect("sshd")["state"] == "sleeping")
    woken = ssh(hyprd, key, port, "echo awake")  # the connection is held while it wakes
    assert woken.returncode == 0 and woken.stdout.strip() == "awake", woken.stderr
    hyprd.ok("rm", "-f", "sshd")
