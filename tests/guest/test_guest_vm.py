"""Real microVM boots under QEMU: the agent, its network setup, restart policies, power-off.

Read-only checks share one VM ("web"); every test talks to it through a fresh AgentClient,
so each also exercises a disconnect and reconnect of the control channel.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from guestvm import (
    BOOT_TIMEOUT,
    GuestVm,
    Netns,
    VmFactory,
    connect,
    sh,
    shutdown_and_wait,
    with_agent,
)

from hypr.guest.assets import preferred_kernel
from hypr.guest.protocol import AgentClient
from hypr.guest.spec import PROBE_ARGS, PROBE_MARKER, WorkloadSpec
from hypr.guest.wire import AgentDisconnected, AgentState, ExecResult, WorkloadExit
from hypr.vmm.qemu import BootProbe, probe_boot, resolve_accel
from hypr_build.kernel import SIGNATURE_MAGIC

pytestmark = pytest.mark.vm


async def wait_for_state(client: AgentClient, check: Callable[[AgentState], bool]) -> None:
    async with asyncio.timeout(60):
        await client.wait_state(check)


def assert_tail_of(events: list[WorkloadExit], expected: list[WorkloadExit]) -> None:
    """Exits before our HELLO was answered are not ours to see: compare what came after."""
    assert events and events == expected[len(expected) - len(events) :]


# --------------------------------------------------------------------- the shared VM

WEB_IP = "10.99.0.10"
WEB_DNS = ["10.99.0.53", "10.99.0.54"]


@pytest.fixture(scope="module")
def web(vms: VmFactory) -> Iterator[GuestVm]:
    nic = vms.static_nic(10, mtu=1400)
    config = vms.config(
        "web",
        WorkloadSpec(argv=["sh", "-c", "echo workload-started; exec sleep 100000"]),
        nics=[nic],
        dns=WEB_DNS,
    )
    vm = asyncio.run(vms.boot(config))
    yield vm
    if vm.adapter.is_alive(vm.handle):
        shutdown_and_wait(vm)


def test_exec_echo_and_exit_codes(web: GuestVm) -> None:
    async def body(client: AgentClient) -> None:
        assert await client.exec(["echo", "hello", "world"]) == ExecResult(0, b"hello world\n", b"")
        results = await asyncio.gather(
            *(client.exec(["sh", "-c", f"exit {n}"]) for n in (0, 1, 42))
        )
        assert [r.exit_code for r in results] == [0, 1, 42]

    with_agent(web, body)


def test_stdout_and_stderr_are_separate(web: GuestVm) -> None:
    result = sh(web, "echo out1; echo err1 >&2; echo out2; echo err2 >&2; exit 3")
    assert result == ExecResult(3, b"out1\nout2\n", b"err1\nerr2\n")


def test_stdin_is_relayed(web: GuestVm) -> None:
    data = os.urandom(300_000)

    async def body(client: AgentClient) -> None:
        echoed = await client.exec(["cat"], stdin=data)
        assert echoed.exit_code == 0 and echoed.stdout == data
        counted = await client.exec(["wc", "-c"], stdin=b"12345")
        assert counted.stdout.strip() == b"5"
        no_stdin = await client.exec(["cat"])  # /dev/null: EOF at once
        assert no_stdin == ExecResult(0, b"", b"")

    with_agent(web, body)


def test_large_output_is_complete(web: GuestVm) -> None:
    result = sh(web, "head -c 3000000 /dev/zero; echo done >&2")
    assert len(result.stdout) == 3_000_000 and result.stderr == b"done\n"


def test_exec_failures_env_and_workdir(web: GuestVm) -> None:
    async def body(client: AgentClient) -> None:
        missing = await client.exec(["no-such-command"])
        assert missing.exit_code == 127
        assert b"executable file not found" in missing.stderr
        not_exec = await client.exec(["/etc/passwd"])
        assert not_exec.exit_code == 126
        env = await client.exec(
            ["sh", "-c", "pwd; echo $FOO; echo $HOME; echo $PATH"],
            env=["FOO=bar baz"],
            workdir="/var/www",
        )
        assert env.stdout.decode().splitlines() == [
            "/var/www",
            "bar baz",
            "/root",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ]

    with_agent(web, body)


def test_concurrent_sessions(web: GuestVm) -> None:
    async def body(client: AgentClient) -> None:
        results = await asyncio.gather(
            *(client.exec(["sh", "-c", f"sleep 0.3; echo {i}; exit {i}"]) for i in range(16))
        )
        assert [(r.exit_code, r.stdout) for r in results] == [
            (i, f"{i}\n".encode()) for i in range(16)
        ]

    with_agent(web, body)


def test_streaming_session_and_signals(web: GuestVm) -> None:
    async def body(client: AgentClient) -> None:
        cat = await client.open_exec(["cat"], interactive=True)
        await cat.write_stdin(b"ping\n")
        chunks = aiter(cat)
        assert await anext(chunks) == ("stdout", b"ping\n")
        await cat.close_stdin()
        assert await cat.wait() == 0

        sleeper = await client.open_exec(["sleep", "100"])
        await asyncio.sleep(0.3)
        await sleeper.signal(15)
        assert await sleeper.wait() == 128 + 15

    with_agent(web, body)


def test_guest_clock_runs_at_host_rate(web: GuestVm) -> None:
    async def body(client: AgentClient) -> float:
        started = time.monotonic()
        assert (await client.exec(["sleep", "2"])).exit_code == 0
        return time.monotonic() - started

    assert 1.95 < with_agent(web, body) < 3.0  # a wrong tsc_early_khz skews this by ~20%


def test_signal_right_after_exec_is_not_lost(web: GuestVm) -> None:
    """EXEC and SIGNAL in one read: the child may not have its own process group yet."""

    async def body(client: AgentClient) -> None:
        for _ in range(3):
            sleeper = await client.open_exec(["sleep", "100"])
            await sleeper.signal(15)
            assert await asyncio.wait_for(sleeper.wait(), 10) == 128 + 15

    with_agent(web, body)


def test_network_configuration(web: GuestVm) -> None:
    nic = web.config.nics[0]
    addr = sh(web, "ip addr show eth0").stdout.decode()
    assert f"inet {WEB_IP}/24" in addr
    assert f"link/ether {nic.mac}" in addr
    assert "mtu 1400" in addr
    routes = sh(web, "ip route").stdout.decode()
    assert "default via 10.99.0.1 dev eth0" in routes
    assert sh(web, "ping -c 1 -W 5 10.99.0.1").exit_code == 0  # our own namespace's bridge


def test_hostname_hosts_and_resolv_conf(web: GuestVm) -> None:
    assert sh(web, "hostname").stdout == b"web\n"
    assert sh(web, "cat /etc/hostname").stdout == b"web\n"
    assert (
        sh(web, "cat /etc/resolv.conf").stdout == b"nameserver 10.99.0.53\nnameserver 10.99.0.54\n"
    )
    hosts = sh(web, "cat /etc/hosts").stdout.decode()
    assert "127.0.0.1\tlocalhost" in hosts and f"{WEB_IP}\tweb" in hosts


def test_workload_state_and_console(web: GuestVm) -> None:
    async def body(client: AgentClient) -> None:
        assert client.state.workload == "running" and (client.state.pid or 0) > 1
        ps = await client.exec(["ps", "-o", "pid,args"])
        assert f"{client.state.pid} sleep 100000".encode() in ps.stdout

    with_agent(web, body)
    log = web.config.console_log.read_bytes()
    assert b"workload-started\n" in log and b"\r" not in log.split(b"workload-started")[1][:2]
    assert sh(web, "test -e /dev/stdout && test -e /dev/fd/0 && test -c /dev/null").exit_code == 0


def test_boot_steps_are_in_the_kernel_log_not_the_console(web: GuestVm) -> None:
    dmesg = sh(web, "dmesg").stdout.decode()
    line = next(w for w in dmesg.splitlines() if "kestrel: boot ms:" in w)
    marks = dict(w.split("=") for w in line.split("boot ms:")[1].split())
    steps = ["init", "mounts", "modules", "rootfs", "net", "workload", "ready"]
    assert set(steps) <= set(marks) and "channel" in marks
    times = [float(marks[s]) for s in steps]
    assert times == sorted(times)
    assert b"boot ms" not in web.config.console_log.read_bytes()


def test_modules_are_shipped_unsigned_and_without_btf(assets: Path) -> None:
    modules = sorted((assets / ".cache" / "modules").glob("*.ko"))
    assert modules
    for module in modules:
        assert not module.read_bytes().endswith(SIGNATURE_MAGIC), module.name
        sections = subprocess.run(
            ["readelf", "-S", "-W", str(module)], capture_output=True, text=True, check=True
        ).stdout
        assert " .BTF " not in sections and " .modinfo " in sections, module.name


def test_disconnect_and_reconnect_keep_serving(web: GuestVm) -> None:
    async def main() -> None:
        first = await connect(web)
        orphan = await first.open_exec(["sleep", "777"])
        await asyncio.sleep(0.3)
        await first.close()  # like a daemon crash: the agent must kill the session
        with pytest.raises(AgentDisconnected):
            await orphan.wait()
        for _ in range(5):  # quick successive reconnects
            client = await connect(web)
            assert (await client.exec(["echo", "ok"])).stdout == b"ok\n"
            await client.close()
        client = await connect(web)
        ps = await client.exec(["ps", "-o", "args"])
        assert b"sleep 777" not in ps.stdout
        await client.close()

    asyncio.run(main())


# ----------------------------------------------------------------- lifecycle VMs


def test_restart_on_failure_until_max_restarts(vms: VmFactory) -> None:
    spec = WorkloadSpec(
        argv=["sh", "-c", "echo run; sleep 1; exit 3"], restart="on-failure", max_restarts=2
    )

    async def main() -> None:
        vm = await vms.boot(vms.config("onfail", spec))
        events: list[WorkloadExit] = []
        client = await connect(vm, on_workload_exit=events.append)
        final = await asyncio.wait_for(client.wait_final_exit(), BOOT_TIMEOUT)
        assert final == WorkloadExit(3, False, 2)
        assert_tail_of(events, [WorkloadExit(3, True, 0), WorkloadExit(3, True, 1), final])
        await asyncio.wait_for(vm.adapter.wait(vm.handle), 20)  # powered off by itself
        assert vm.console().count("run\n") == 3

    asyncio.run(main())


ALWAYS_SCRIPT = """
n=$(cat /tmp/n 2>/dev/null || echo 0); echo $((n+1)) > /tmp/n
trap '' TERM
echo "run $n"
case $n in 0) exit 0;; 1) exit 7;; esac
touch /tmp/armed
exec sleep 100000
"""


def test_restart_always_and_shutdown_kills_after_grace(vms: VmFactory) -> None:
    spec = WorkloadSpec(argv=["sh", "-c", ALWAYS_SCRIPT], restart="always")

    async def main() -> None:
        vm = await vms.boot(vms.config("always", spec))
        events: list[WorkloadExit] = []
        client = await connect(vm, on_workload_exit=events.append)
        await wait_for_state(
            client, lambda state: state.restarts == 2 and state.workload == "running"
        )
        assert_tail_of(events, [WorkloadExit(0, True, 0), WorkloadExit(7, True, 1)])
        # STATE comes at fork, before the trap is set: wait in the guest for the script's mark
        armed = ["sh", "-c", "until [ -e /tmp/armed ]; do sleep 0.05; done"]
        await asyncio.wait_for(client.exec(armed), 60)
        started = time.monotonic()
        final = await client.shutdown(1)  # SIGTERM is ignored: SIGKILL after 1 s
        assert final == WorkloadExit(128 + 9, False, 2)
        assert time.monotonic() - started >= 0.9
        await asyncio.wait_for(vm.adapter.wait(vm.handle), 20)

    asyncio.run(main())


def test_restart_no_reports_exit_code_and_powers_off(vms: VmFactory) -> None:
    spec = WorkloadSpec(argv=["sh", "-c", "sleep 1; exit 42"])

    async def main() -> None:
        vm = await vms.boot(vms.config("once", spec))
        client = await connect(vm)
        final = await asyncio.wait_for(client.wait_final_exit(), BOOT_TIMEOUT)
        assert final == WorkloadExit(42, False, 0)
        exited_at = time.monotonic()
        await asyncio.wait_for(vm.adapter.wait(vm.handle), 20)
        assert time.monotonic() - exited_at < 5
        assert not vm.adapter.is_alive(vm.handle)
        await vm.adapter.delete(vm.handle)
        assert not vm.config.runtime_dir.joinpath("initrd.cpio").exists()

    asyncio.run(main())


def test_shutdown_of_running_workload(vms: VmFactory) -> None:
    spec = WorkloadSpec(argv=["sleep", "100000"], restart="always")
    vm = asyncio.run(vms.boot(vms.config("stop", spec)))
    assert shutdown_and_wait(vm) == WorkloadExit(128 + 15, False, 0)


@pytest.fixture
def dnsmasq(netns: Netns, tmp_path: Path) -> Iterator[str]:
    """A DHCP server on the namespace's bridge; yields the MAC it has a reservation for."""
    if shutil.which("dnsmasq") is None:
        pytest.skip("dnsmasq not installed")
    mac = "52:54:00:99:dd:01"
    proc = subprocess.Popen(
        [
            "ip", "netns", "exec", netns.name, "dnsmasq", "--keep-in-foreground",
            "--conf-file=/dev/null", "--port=0", "--interface=br0", "--bind-interfaces",
            "--dhcp-range=10.99.0.100,10.99.0.150,255.255.255.0", "--no-ping",
            f"--dhcp-host={mac},10.99.0.77", "--dhcp-option=option:router,10.99.0.1",
            "--dhcp-option=option:dns-server,10.99.0.53",
            f"--dhcp-leasefile={tmp_path / 'leases'}", f"--pid-file={tmp_path / 'pid'}",
        ],
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield mac
    finally:
        proc.kill()
        proc.wait()


def test_dhcp_and_nic_matching_by_mac(vms: VmFactory, dnsmasq: str) -> None:
    static = vms.static_nic(20)
    dhcp = vms.dhcp_nic(dnsmasq)
    vm = asyncio.run(
        vms.boot(vms.config("dhcp", WorkloadSpec(argv=["sleep", "100000"]), nics=[static, dhcp]))
    )
    try:
        eth1 = sh(vm, "ip addr show eth1").stdout.decode()
        assert "inet 10.99.0.77/24" in eth1 and f"link/ether {dnsmasq}" in eth1
        assert sh(vm, "cat /sys/class/net/eth0/address").stdout.decode().strip() == static.mac
        assert "default via 10.99.0.1 dev eth0" in sh(vm, "ip route").stdout.decode()
        assert sh(vm, "cat /etc/resolv.conf").stdout == b"nameserver 10.99.0.53\n"
    finally:
        shutdown_and_wait(vm)


# ------------------------------------------------------------------------- accel probe


def test_probe_boot_and_accel_resolution(assets: Path) -> None:
    probe = BootProbe(preferred_kernel(assets), assets / "initramfs.cpio", PROBE_ARGS, PROBE_MARKER)
    took, why = asyncio.run(probe_boot("tcg", probe, budget=60))
    assert took is not None, why
    accel = asyncio.run(resolve_accel("auto", probe))
    if Path("/sys/module/kvm_pvm").exists():
        assert accel == "tcg"  # this platform's nested KVM never boots a guest
    assert accel in ("kvm", "tcg")
    assert asyncio.run(resolve_accel("tcg", probe)) == "tcg"
    leftovers = [
        p for p in Path("/proc").iterdir()
        if p.name.isdigit() and b"hypr.probe=1" in _cmdline(p)
    ]  # fmt: skip
    assert leftovers == [], "a probe QEMU outlived the probe"


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""
