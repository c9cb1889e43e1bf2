"""Snapshots and idle VMs with real parts: QEMU saves a running guest's state and resumes it
(the same processes, open files, addresses, published ports; the clock set again); a VM
with an idle timeout sleeps and is woken by a request to a published port, an SSH-pool
connection and an exec, with nothing lost; bad input is refused and changes nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hypr.sandbox import Hyprd, create_netns, delete_netns, in_ns, wait_for

pytestmark = pytest.mark.vm

# A counter written through a file descriptor held open, and a web server.
WORKLOAD = (
    "echo $$ > /tmp/pid; exec 3>/tmp/counter.log; i=0; echo served > /index.html; "
    "httpd -p 80 -h /; while :; do i=$((i+1)); echo $i >&3; echo $i > /tmp/count; "
    "sleep 0.2; done"
)


@pytest.fixture(scope="module")
def hyprd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hyprd]:
    ns = create_netns()
    try:
        daemon = Hyprd(ns, tmp_path_factory.mktemp("snapshots"))
        daemon.start()
        yield daemon
    finally:
        delete_netns(ns)


def state(hyprd: Hyprd, vm: str) -> str:
    return str(hyprd.inspect(vm)["state"])


def exec_out(hyprd: Hyprd, vm: str, script: str) -> str:
    return hyprd.ok("exec", vm, "sh", "-c", script).strip()


def fetch(hyprd: Hyprd, port: int) -> str:
    url = f"http://127.0.0.1:{port}/index.html"
    return in_ns(hyprd.netns, "curl", "-s", "--max-time", "60", url, check=False).stdout.strip()


def test_a_restored_vm_keeps_its_processes_files_addresses_and_ports(hyprd: Hyprd) -> None:
    hyprd.ok("run", "-d", "--name", "saved", "-p", "8181:80", "busybox", "sh", "-c", WORKLOAD)
    wait_for(lambda: hyprd.hypr("exec", "saved", "cat", "/tmp/count").stdout.strip() != "")
    before = hyprd.inspect("saved")
    pid = exec_out(hyprd, "saved", "cat /tmp/pid")
    assert hyprd.ok("snapshot", "create", "saved", "first").strip() == "first"
    count = int(exec_out(hyprd, "saved", "cat /tmp/count"))
    listing = hyprd.ok("snapshot", "ls").splitlines()
    assert listing[0].split() == ["NAME", "VM", "CREATED", "SIZE"]
    assert listing[1].split()[:2] == ["first", "saved"]
    taken = time.time()
    hyprd.ok("stop", "saved")
    assert state(hyprd, "saved") == "exited"
    wait_for(lambda: time.time() > taken + 3)  # the host clock moves on while it is down

    hyprd.ok("start", "--snapshot", "first", "saved")
    after = hyprd.inspect("saved")
    assert after["state"] == "running"
    assert (after["guest_ip"], after["guest_mac"]) == (before["guest_ip"], before["guest_mac"])
    assert exec_out(hyprd, "saved", "cat /tmp/pid") == pid  # the same process goes on
    wait_for(lambda: int(exec_out(hyprd, "saved", "tail -n1 /tmp/counter.log")) > count)
    # the descriptor it held open still writes the same file, with no gap
    numbers = [int(n) for n in exec_out(hyprd, "saved", "cat /tmp/counter.log").split()]
    assert numbers == list(range(1, len(numbers) + 1))
    assert fetch(hyprd, 8181) == "served"  # the published port leads to it again
    guest_clock = int(exec_out(hyprd, "saved", "date +%s"))
    assert guest_clock >= int(taken + 3)  # set from the host's, not the saved one
    hyprd.ok("rm", "-f", "saved")
    assert "first" not in hyprd.ok("snapshot", "ls")  # a VM's snapshots go with it


def test_snapshot_bad_input_is_refused_and_changes_nothing(hyprd: Hyprd) -> None:
    hyprd.ok("run", "-d", "--name", "one", "busybox", "sleep", "3600")
    hyprd.ok("run", "-d", "--name", "two", "busybox", "sleep", "3600")
    hyprd.ok("snapshot", "create", "one", "of-one")
    cases = [
        (("snapshot", "create", "one", "of-one"), "exists already"),
        (("snapshot", "create", "one", "bad name"), "invalid snapshot name"),
        (("start", "--snapshot", "of-one", "one"), "is running: stop it"),
        (("start", "--snapshot", "nothing", "one"), "no such snapshot"),
        (("snapshot", "rm", "nothing"), "no such snapshot"),
    ]
    for args, message in cases:
        result = hyprd.hypr(*args)
        assert result.returncode != 0 and message in result.stderr, (args, result.stderr)
    hyprd.ok("stop", "two")
    wrong = hyprd.hypr("start", "--snapshot", "of-one", "two")
    assert wrong.returncode != 0 and "can only be restored onto its own VM" in wrong.stderr
    stopped = hyprd.hypr("snapshot", "create", "two")
    assert stopped.returncode != 0 and "only a running VM" in stopped.stderr
    hyprd.ok("run", "-d", "--name", "vol", "-v", "data:/data", "busybox", "sleep", "3600")
    shares = hyprd.hypr("snapshot", "create", "vol")
    assert shares.returncode != 0 and "virtio-fs" in shares.stderr
    assert hyprd.ok("snapshot", "ls", "-q").split() == ["of-one"]
    assert state(hyprd, "two") == "exited"

    hyprd.ok("network", "create", "gone", "--subnet", "10.77.0.0/24")
    hyprd.ok("run", "-d", "--name", "netless", "--network", "gone", "busybox", "sleep", "3600")
    hyprd.ok("snapshot", "create", "netless", "of-netless")
    hyprd.ok("stop", "netless")
    hyprd.ok("network", "rm", "-f", "gone")
    refused = hyprd.hypr("start", "--snapshot", "of-netless", "netless")
    assert refused.returncode != 0 and "networks changed" in refused.stderr
    assert state(hyprd, "netless") == "exited"
    hyprd.ok("rm", "-f", "one", "two", "vol", "netless")


SSH_LIKE = (
    "echo $$ > /tmp/pid; echo kept > /tmp/mark; echo served > /index.html; httpd -p 80 -h /; "
    "while :; do echo ssh-banner | nc -l -p 22; done"
)


def test_an_idle_vm_sleeps_and_wakes_on_a_request_a_connection_and_an_exec(
    hyprd: Hyprd,
) -> None:
    hyprd.ok("run", "-d", "--name", "idle", "-p", "8282:80", "--ssh", "--idle-timeout", "2s",
             "--expose", "80", "busybox", "sh", "-c", SSH_LIKE)  # fmt: skip
    ssh_port = hyprd.inspect("idle")["ssh_port"]
    wait_for(lambda: fetch(hyprd, 8282) == "served")
    pid = exec_out(hyprd, "idle", "cat /tmp/pid")

    wait_for(lambda: state(hyprd, "idle") == "sleeping")
    assert "Sleeping" in hyprd.ok("ps")
    assert fetch(hyprd, 8282) == "served"  # held while it woke, then answered
    assert state(hyprd, "idle") == "running"

    wait_for(lambda: state(hyprd, "idle") == "sleeping")
    banner = in_ns(
        hyprd.netns, "sh", "-c", f"echo | busybox nc -w 60 127.0.0.1 {ssh_port}", check=False
    )
    assert banner.stdout.strip() == "ssh-banner"

    wait_for(lambda: state(hyprd, "idle") == "sleeping")
    assert exec_out(hyprd, "idle", "cat /tmp/mark /tmp/pid").split() == ["kept", pid]

    wait_for(lambda: state(hyprd, "idle") == "sleeping")
    host = "idle.hypr.localhost"  # through the reverse proxy (HYPR_PROXY_ADDR's default)
    proxied = in_ns(hyprd.netns, "curl", "-s", "--max-time", "60", "-H", f"Host: {host}",
                    "http://127.0.0.1:41005/index.html", check=False)  # fmt: skip
    assert proxied.stdout.strip() == "served"

    wait_for(lambda: state(hyprd, "idle") == "sleeping")
    hyprd.restart()  # a sleeping VM stays asleep, and its ports still wake it
    assert state(hyprd, "idle") == "sleeping"
    assert fetch(hyprd, 8282) == "served"
    hyprd.ok("stop", "idle")
    assert state(hyprd, "idle") == "exited"
    hyprd.ok("rm", "idle")
    assert not any(Path(hyprd.data_dir / "snapshots").iterdir())


def test_idle_timeout_must_be_a_duration(hyprd: Hyprd) -> None:
    before = hyprd.ok("ps", "-a", "-q")
    for value, message in [("soon", "invalid duration"), ("0s", "idle_timeout")]:
        result = hyprd.hypr("run", "-d", "--idle-timeout", value, "busybox", "true")
        assert result.returncode != 0 and message in result.stderr, result.stderr
    assert hyprd.ok("ps", "-a", "-q") == before
