"""hyprd killed at every step of `run` and `rm`, and hypervisors killed under hyprd.

Each crash case starts hyprd with HYPR_FAULT=<point> (it SIGKILLs itself exactly there),
drives the operation, restarts hyprd on the same run and data dirs, and checks what a user
and the kernel see: no orphan QEMU, no stale TAP, no address without its VM, and a VM that
is either adopted and exec-able or cleanly exited (or removed), which `start` and `rm` then
handle as usual.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

import hypr.daemon.vms  # noqa: F401  (registers the run/rm fault points)
from hypr import faults
from hypr.sandbox import Hyprd, sh, wait_for
from hypr.vmm.virtiofs import VirtiofsDaemons
from tests.conftest import links

pytestmark = pytest.mark.vm

CRASH_POINTS = sorted(p for p in faults.POINTS if p.startswith(("run.", "rm.")))
SETTLED = ("running", "exited", "created")


def qemu_pids(hyprd: Hyprd) -> list[int]:
    """Hypervisors of VMs running in the daemon's namespace (not the accelerator probe's)."""
    found = []
    for pid in sh("ip", "netns", "pids", hyprd.netns, check=False).stdout.split():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"qemu-system-x86_64") and b"-name" in argv:
            found.append(int(pid))
    return sorted(found)


def taps(hyprd: Hyprd) -> set[str]:
    return {name for name, link in links(hyprd.netns).items() if link["kind"] == "tun"}


def file_servers(hyprd: Hyprd) -> set[str]:
    """The runtime dirs (VM id prefixes) that a live virtiofsd serves."""
    return set(VirtiofsDaemons.find(hyprd.run_dir / "vms"))


def assert_consistent(hyprd: Hyprd) -> None:
    """Kernel, processes and database agree: one QEMU per running VM and no other, a file
    server only for a running VM, TAPs only of running VMs, addresses only of existing VMs."""
    vms = hyprd.db_rows("SELECT id, state, pid FROM vms")
    running = {vm_id: pid for vm_id, state, pid in vms if state == "running"}
    assert qemu_pids(hyprd) == sorted(running.values())
    assert file_servers(hyprd) <= {vm_id[:16] for vm_id in running}
    held = {row[0] for row in hyprd.db_rows("SELECT tap FROM vm_nics WHERE tap IS NOT NULL")}
    assert taps(hyprd) == held
    owners = {row[0] for row in hyprd.db_rows("SELECT owner FROM ip_allocations")}
    assert owners <= {vm_id for vm_id, _, _ in vms}


def exec_ok(hyprd: Hyprd, vm: str) -> bool:
    result = hyprd.hypr("exec", vm, "cat", "/etc/hostname")
    return (result.returncode, result.stdout) == (0, f"{vm}\n")


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_hyprd_killed_at_each_step(hyprd_factory: Callable[..., Hyprd], point: str) -> None:
    hyprd = hyprd_factory(env={faults.ENV: point})
    # With a volume: its file server must follow the VM through every crash.
    run = ("run", "-d", "--name", "v", "-v", "crashvol:/data", "busybox", "sleep", "3600")
    if point.startswith("rm."):
        hyprd.ok(*run)
        result = hyprd.hypr("rm", "-f", "v")
    else:
        result = hyprd.hypr(*run)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert hyprd.proc is not None and hyprd.proc.wait(30) in (-signal.SIGKILL, 137)
    hyprd.proc = None
    hyprd.extra_env = {}
    hyprd.start()

    states = dict(hyprd.db_rows("SELECT name, state FROM vms"))
    if "v" in states:
        wait_for(lambda: hyprd.db_rows("SELECT state FROM vms")[0][0] in SETTLED)
        assert_consistent(hyprd)
        if hyprd.inspect("v")["state"] == "running":
            assert exec_ok(hyprd, "v")
        else:
            hyprd.ok("start", "v")
            assert exec_ok(hyprd, "v")
        assert len(qemu_pids(hyprd)) == 1
        hyprd.ok("rm", "-f", "v")
    assert hyprd.db_rows("SELECT id FROM vms") == []
    assert qemu_pids(hyprd) == [] and taps(hyprd) == set() and file_servers(hyprd) == set()
    assert hyprd.db_rows("SELECT owner FROM ip_allocations") == []
    hyprd.ok(*run)  # the name, address and TAP are free again
    assert exec_ok(hyprd, "v")
    hyprd.ok("exec", "v", "--", "sh", "-c", "echo kept > /data/f")
    volume = json.loads(hyprd.ok("volume", "inspect", "crashvol"))[0]
    assert (Path(volume["Mountpoint"]) / "f").read_text() == "kept\n"


def test_killed_hypervisor_is_recorded_truthfully(hyprd: Hyprd) -> None:
    hyprd.ok("run", "-d", "--name", "k", "busybox", "sleep", "3600")
    sh("kill", "-9", str(hyprd.inspect("k")["pid"]))
    wait_for(lambda: hyprd.inspect("k")["state"] == "exited")
    view = hyprd.inspect("k")
    assert view["exit_code"] == 137
    assert view["error"] == "the hypervisor was killed by signal 9 (SIGKILL)"
    assert "Exited (137)" in hyprd.ok("ps", "-a")
    assert taps(hyprd) == set() and qemu_pids(hyprd) == []


@pytest.mark.parametrize("policy", ["always", "on-failure"])
def test_killed_hypervisor_is_restarted_by_policy(hyprd: Hyprd, policy: str) -> None:
    hyprd.ok("run", "-d", "--name", "r", "--restart", policy, "busybox", "sleep", "3600")
    first = hyprd.inspect("r")["pid"]
    sh("kill", "-9", str(first))

    def restarted() -> bool:
        view = hyprd.inspect("r")
        return view["state"] == "running" and view["pid"] != first

    wait_for(restarted)
    assert exec_ok(hyprd, "r")
    assert_consistent(hyprd)


def test_hypervisor_killed_while_hyprd_down_is_restarted_at_start(hyprd: Hyprd) -> None:
    hyprd.ok("run", "-d", "--name", "r", "--restart", "always", "busybox", "sleep", "3600")
    hyprd.ok("run", "-d", "--name", "plain", "busybox", "sleep", "3600")
    pids = {vm: hyprd.inspect(vm)["pid"] for vm in ("r", "plain")}
    hyprd.stop(signal.SIGKILL)
    for pid in pids.values():
        sh("kill", "-9", str(pid))
    hyprd.start()
    wait_for(lambda: hyprd.inspect("r")["state"] == "running")
    assert exec_ok(hyprd, "r")
    plain = hyprd.inspect("plain")
    assert plain["state"] == "exited" and "not running" in plain["error"]
    assert_consistent(hyprd)
