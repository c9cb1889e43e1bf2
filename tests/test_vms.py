"""Real microVMs under QEMU, on real bridges, in namespaces the tests create.

A module-wide "lab" boots a few VMs once for the tests that only read from them; tests that
change state get their own daemon.
"""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from hypr.sandbox import (
    UPSTREAM_ADDRESS,
    Hyprd,
    add_upstream,
    create_netns,
    delete_netns,
    in_ns,
    sh,
    wait_for,
)
from hypr.state.vms import VmSpec
from tests.conftest import links

pytestmark = pytest.mark.vm


@dataclass
class Lab:
    hyprd: Hyprd
    upstream: str
    vms: dict[str, dict]  # name -> inspect view

    def exec(self, vm: str, *cmd: str) -> tuple[int, str, str]:
        result = self.hyprd.hypr("exec", vm, "--", *cmd)
        return result.returncode, result.stdout, result.stderr


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    ns, upstream = create_netns(), create_netns()
    try:
        hyprd = Hyprd(ns, tmp_path_factory.mktemp("lab"))
        hyprd.start()
        hyprd.ok("network", "create", "other", "--subnet", "10.89.0.0/24")
        hyprd.ok("network", "create", "sealed", "--internal", "--subnet", "10.90.0.0/24")
        add_upstream(ns, upstream)
        plan = {
            "a1": ["--network", "bridge"],
            "a2": ["--network", "bridge"],
            "b1": ["--network", "other"],
            "s1": ["--network", "sealed"],
            "multi": ["--network", "bridge", "--network", "other", "--memory", "128m"],
        }

        def run(name: str) -> str:
            return hyprd.ok("run", "-d", "--name", name, *plan[name], "busybox", "sleep", "3600")

        with ThreadPoolExecutor(len(plan)) as pool:
            list(pool.map(run, plan))
        yield Lab(hyprd, upstream, {name: hyprd.inspect(name) for name in plan})
    finally:
        delete_netns(ns)
        delete_netns(upstream)


def test_concurrent_runs_get_distinct_addresses_macs_and_taps(lab: Lab) -> None:
    views = list(lab.vms.values())
    assert all(v["state"] == "running" for v in views)
    for key in ("guest_ip", "guest_mac", "tap_name"):
        values = [v[key] for v in views]
        assert len(set(values)) == len(values), key
    assert all(v["guest_mac"].startswith("02:fc:") for v in views)


def test_guest_sees_what_inspect_says(lab: Lab) -> None:
    view = lab.vms["a1"]
    code, addr, _ = lab.exec("a1", "ip", "addr", "show", "eth0")
    assert code == 0
    assert f"inet {view['guest_ip']}/16" in addr
    assert view["guest_mac"] in addr
    code, route, _ = lab.exec("a1", "ip", "route")
    assert "default via 10.88.0.1 dev eth0" in route
    assert lab.exec("a1", "hostname")[1].strip() == "a1"
    assert "nameserver 10.88.0.1" in lab.exec("a1", "cat", "/etc/resolv.conf")[1]
    # the host side: a TAP of hypr's, on the bridge, up
    tap = links(lab.hyprd.netns)[view["tap_name"]]
    assert tap["kind"] == "tun" and tap["master"] == "vbr0" and tap["up"]
    assert tap["alias"] == f"hypr:nic:{view['id']}"


def test_vm_on_two_networks_has_two_nics(lab: Lab) -> None:
    view = lab.vms["multi"]
    assert [n["network"] for n in view["networks"]] == ["bridge", "other"]
    _, addr, _ = lab.exec("multi", "ip", "-o", "-4", "addr")
    for index, nic in enumerate(view["networks"]):
        assert re.search(rf"eth{index}\s+inet {nic['ip']}/{nic['prefix_len']}", addr), addr
    assert links(lab.hyprd.netns)[view["networks"][1]["tap"]]["master"] == "vbr1"


def test_ping_by_ip_isolation_masquerade_and_internal(lab: Lab) -> None:
    ip = {name: view["guest_ip"] for name, view in lab.vms.items()}

    def ping(src: str, dst: str) -> bool:
        return lab.exec(src, "ping", "-c", "1", "-W", "2", dst)[0] == 0

    assert ping("a1", ip["a2"])
    assert ping("a2", ip["a1"])
    assert not ping("b1", ip["a1"])
    assert not ping("a1", ip["b1"])
    assert ping("a1", UPSTREAM_ADDRESS)  # upstream, through the masquerade
    assert ping("b1", UPSTREAM_ADDRESS)
    assert not ping("s1", UPSTREAM_ADDRESS)  # internal: no way out
    assert not ping("s1", ip["a1"])


def test_exec_relays_output_exit_codes_and_stdin(lab: Lab) -> None:
    for code in (0, 1, 42):
        assert lab.exec("a1", "sh", "-c", f"exit {code}")[0] == code
    code, out, err = lab.exec("a1", "sh", "-c", "echo to-out; echo to-err >&2")
    assert (out, err) == ("to-out\n", "to-err\n")
    result = lab.hyprd.hypr(
        "exec", "-i", "a1", "--", "sh", "-c", "tr a-z A-Z; exit 7", input="hello stdin\n"
    )
    assert (result.returncode, result.stdout) == (7, "HELLO STDIN\n")
    result = lab.hyprd.hypr(
        "exec", "-e", "GREETING=hi", "-w", "/tmp", "a1", "sh", "-c", "echo $GREETING $(pwd)"
    )
    assert result.stdout == "hi /tmp\n"
    code, _, err = lab.exec("a1", "no-such-command")
    assert code == 127 and "no-such-command" in err


def test_ps_and_network_inspect_list_the_vms(lab: Lab) -> None:
    out = lab.hyprd.ok("ps").splitlines()
    assert re.match(r"VM ID\s+NAME\s+IMAGE\s+STATUS\s+IP\s+PORTS", out[0])
    row = next(line for line in out if " a1 " in line)
    assert "busybox:latest" in row and "Up " in row and lab.vms["a1"]["guest_ip"] in row
    (bridge,) = json.loads(lab.hyprd.ok("network", "inspect", "bridge"))
    endpoint = bridge["Containers"][lab.vms["a1"]["id"]]
    assert endpoint["Name"] == "a1"
    assert endpoint["IPv4Address"] == f"{lab.vms['a1']['guest_ip']}/16"
    assert endpoint["MacAddress"] == lab.vms["a1"]["guest_mac"]
    result = lab.hyprd.hypr("network", "rm", "other")
    assert result.returncode != 0 and "attached" in result.stderr


def test_accel_auto_picks_tcg_here_and_says_so(lab: Lab) -> None:
    assert re.search(r"accel: .*using tcg", lab.hyprd.log())
    info = dict(line.split(": ", 1) for line in lab.hyprd.ok("info").splitlines())
    assert info["Accelerator"] == "tcg"


# --- tests with a daemon of their own ---------------------------------------------------


def allocations(hyprd: Hyprd) -> list[tuple[int, str]]:
    return hyprd.db_rows("SELECT address, owner FROM ip_allocations ORDER BY address")


def test_stop_start_rm_release_tap_then_address(hyprd: Hyprd) -> None:
    vm_id = hyprd.ok(
        "run", "-d", "--name", "web", "--ip", "10.88.0.50", "busybox", "sleep", "3600"
    ).strip()
    view = hyprd.inspect("web")
    tap = view["tap_name"]
    assert view["guest_ip"] == "10.88.0.50" and tap in links(hyprd.netns)

    hyprd.ok("stop", "-t", "1", "web")
    view = hyprd.inspect("web")
    assert view["state"] == "exited" and view["exit_code"] == 143 and view["pid"] is None
    assert view["tap_name"] is None and tap not in links(hyprd.netns)
    assert allocations(hyprd) == [(int.from_bytes(bytes([10, 88, 0, 50])), vm_id)]
    assert hyprd.hypr("exec", "web", "true").returncode != 0

    hyprd.ok("start", "web")
    view = hyprd.inspect("web")
    assert view["state"] == "running" and view["guest_ip"] == "10.88.0.50"
    assert view["tap_name"] in links(hyprd.netns)
    assert hyprd.hypr("exec", "web", "true").returncode == 0

    result = hyprd.hypr("rm", "web")
    assert result.returncode != 0 and "rm --force" in result.stderr
    hyprd.ok("rm", "-f", "web")
    assert allocations(hyprd) == []
    assert hyprd.db_rows("SELECT * FROM vms") == []
    assert not any(link.startswith("tap") for link in links(hyprd.netns))


def test_attached_run_prints_output_and_returns_exit_code(hyprd: Hyprd) -> None:
    result = hyprd.hypr("run", "--rm", "busybox", "sh", "-c", "echo from the guest; exit 5")
    assert result.returncode == 5
    assert result.stdout == "from the guest\n"
    assert hyprd.db_rows("SELECT * FROM vms") == [] and allocations(hyprd) == []


def test_user_and_stop_signal_reach_the_guest(hyprd: Hyprd) -> None:
    ids = hyprd.hypr("run", "--rm", "-u", "1234:5678", "busybox", "sh", "-c", "id -u; id -g")
    assert (ids.returncode, ids.stdout) == (0, "1234\n5678\n")
    trap = "trap 'echo got-usr1; exit 7' USR1; echo ready; while :; do sleep 0.1; done"
    hyprd.ok("run", "-d", "--name", "trapper", "--stop-signal", "USR1", "busybox", "sh", "-c", trap)
    wait_for(lambda: "ready" in hyprd.ok("logs", "trapper"))
    view = hyprd.inspect("trapper")
    assert (view["user"], view["stop_signal"]) == (None, "USR1")
    assert hyprd.ok("exec", "-u", "42:7", "trapper", "sh", "-c", "id -u; id -g") == "42\n7\n"
    bad = hyprd.hypr("exec", "-u", "a b", "trapper", "id")
    assert bad.returncode != 0 and "invalid user" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    hyprd.ok("stop", "trapper")
    assert hyprd.inspect("trapper")["exit_code"] == 7  # SIGTERM would have made it 143
    assert hyprd.ok("logs", "trapper").splitlines()[-1] == "got-usr1"


def test_restart_policies(hyprd: Hyprd) -> None:
    hyprd.ok(
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "echo run; exit 3",
    )
    wait_for(lambda: hyprd.inspect("flaky")["state"] == "exited")
    view = hyprd.inspect("flaky")
    assert (view["exit_code"], view["restarts"]) == (3, 2)
    assert hyprd.ok("logs", "flaky") == "run\n" * 3

    hyprd.ok(
        "run",
        "-d",
        "--name",
        "forever",
        "--restart",
        "always",
        "busybox",
        "sh",
        "-c",
        "sleep 0.3; exit 0",
    )
    wait_for(lambda: hyprd.inspect("forever")["restarts"] >= 2)
    assert hyprd.inspect("forever")["state"] == "running"

    hyprd.ok("run", "-d", "--name", "once", "busybox", "sh", "-c", "exit 0")
    wait_for(lambda: hyprd.inspect("once")["state"] == "exited")
    assert (hyprd.inspect("once")["exit_code"], hyprd.inspect("once")["restarts"]) == (0, 0)


def test_kill9_of_hyprd_then_adoption(hyprd: Hyprd) -> None:
    hyprd.ok("run", "-d", "--name", "survivor", "busybox", "sleep", "3600")
    hyprd.ok("run", "-d", "--name", "victim", "busybox", "sleep", "3600")
    survivor, victim = hyprd.inspect("survivor"), hyprd.inspect("victim")
    hyprd.stop(signal.SIGKILL)
    # while hyprd is down: one VM's QEMU dies, and a stray hypr TAP appears
    sh("kill", "-9", str(victim["pid"]))
    in_ns(hyprd.netns, "ip", "tuntap", "add", "tap99", "mode", "tap")
    in_ns(hyprd.netns, "ip", "link", "set", "tap99", "alias", "hypr:nic:" + "0" * 64)
    hyprd.start()

    wait_for(lambda: hyprd.inspect("survivor")["state"] == "running")
    view = hyprd.inspect("survivor")
    assert view["pid"] == survivor["pid"] and view["tap_name"] == survivor["tap_name"]
    result = hyprd.hypr("exec", "survivor", "cat", "/etc/hostname")
    assert (result.returncode, result.stdout) == (0, "survivor\n")

    view = hyprd.inspect("victim")
    assert view["state"] == "exited" and "not running" in view["error"]
    kernel = links(hyprd.netns)
    assert victim["tap_name"] not in kernel and "tap99" not in kernel
    assert survivor["tap_name"] in kernel

    # the adopted VM's exit is still noticed
    hyprd.ok("stop", "-t", "1", "survivor")
    assert hyprd.inspect("survivor")["state"] == "exited"
    assert survivor["tap_name"] not in links(hyprd.netns)


def test_network_none_has_no_nic(hyprd: Hyprd) -> None:
    hyprd.ok("run", "-d", "--name", "alone", "--network", "none", "busybox", "sleep", "3600")
    view = hyprd.inspect("alone")
    assert view["networks"] == [] and view["guest_ip"] is None and view["tap_name"] is None
    out = hyprd.ok("exec", "alone", "ip", "-o", "link")
    assert [line.split(":")[1].strip() for line in out.splitlines()] == ["lo"]
    assert not any(link.startswith("tap") for link in links(hyprd.netns))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pull", "never", "nosuchimage"], "image nosuchimage not found"),
        (["--network", "nosuchnet", "busybox"], "network nosuchnet not found"),
        (["--ip", "10.99.0.5", "busybox"], "not in subnet"),
        (["--ip", "10.88.0.1", "busybox"], "gateway"),
        (["--ip", "10.88.0.2", "busybox"], "already in use"),
        (["--ip", "not-an-ip", "busybox"], "invalid IP address"),
        (["--mac", "zz:00:00:00:00:01", "busybox"], "invalid MAC address"),
        (["--mac", "01:00:00:00:00:01", "busybox"], "invalid MAC address"),
        (["--name", "taken", "busybox"], "already in use"),
        (["--name", "bad_name!", "busybox"], "invalid VM name"),
        (["--memory", "64m", "busybox"], "below the 96 MiB"),
        (["--memory", "512", "busybox"], "512 is 512 bytes, below the 96 MiB"),
        (["--restart", "sometimes", "busybox"], "invalid restart policy"),
        (["-e", "NOEQUALS", "busybox"], "invalid environment variable"),
        (["-u", "a b", "busybox"], "invalid user"),
        (["--stop-signal", "SIGNOPE", "busybox"], "invalid stop signal"),
    ],
)
def test_bad_run_input_changes_nothing(hyprd: Hyprd, args: list[str], message: str) -> None:
    if "taken" in args or "10.88.0.2" in args:
        hyprd.ok("run", "-d", "--name", "taken", "--network", "bridge", "busybox", "sleep", "3600")
    before = (
        hyprd.db_rows("SELECT id, state FROM vms"),
        allocations(hyprd),
        sorted(links(hyprd.netns)),
    )
    result = hyprd.hypr("run", "-d", *args)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    after = (
        hyprd.db_rows("SELECT id, state FROM vms"),
        allocations(hyprd),
        sorted(links(hyprd.netns)),
    )
    assert after == before


def test_mac_in_use_and_exec_into_stopped_vm(hyprd: Hyprd) -> None:
    hyprd.ok(
        "run", "-d", "--name", "m1", "--mac", "02:fc:00:00:00:01", "busybox", "sh", "-c", "exit 0"
    )
    result = hyprd.hypr("run", "-d", "--mac", "02:fc:00:00:00:01", "busybox")
    assert result.returncode != 0 and "already in use" in result.stderr
    wait_for(lambda: hyprd.inspect("m1")["state"] == "exited")
    result = hyprd.hypr("exec", "m1", "true")
    assert result.returncode != 0 and "not running" in result.stderr


def test_boot_failure_ends_exited_with_reason_and_releases(hyprd: Hyprd) -> None:
    broken = hyprd.data_dir / "images" / "broken"
    broken.mkdir(parents=True)
    (broken / "manifest.json").write_text(json.dumps({"name": "broken", "cmd": ["sh"]}))
    (broken / "rootfs.squashfs").write_bytes(b"this is not a squashfs image" * 4096)
    result = hyprd.hypr("run", "-d", "--name", "doomed", "broken")
    assert result.returncode != 0
    assert "failed to boot" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    view = hyprd.inspect("doomed")
    assert view["state"] == "exited" and view["error"]
    assert view["tap_name"] is None and view["guest_ip"] is None
    assert allocations(hyprd) == []
    assert not any(link.startswith("tap") for link in links(hyprd.netns))


def test_logs_follow_streams_until_exit(hyprd: Hyprd) -> None:
    hyprd.ok(
        "run",
        "-d",
        "--name",
        "talker",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3; do echo line $i; sleep 0.2; done",
    )
    result = hyprd.hypr("logs", "-f", "talker")
    assert result.stdout == "line 1\nline 2\nline 3\n"


def test_daemon_log_file_is_under_data_dir(hyprd: Hyprd) -> None:
    vm_id = hyprd.ok("run", "-d", "busybox", "sh", "-c", "echo persisted").strip()
    wait_for(lambda: Path(hyprd.data_dir / "logs" / f"{vm_id}.log").exists())
    wait_for(lambda: "persisted" in (hyprd.data_dir / "logs" / f"{vm_id}.log").read_text())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("env", ["A=b\0c"]),
        ("command", ["sh", "-c", "echo\0x"]),
        ("entrypoint", ["/bin/sh\0"]),
        ("workdir", "/tmp\0x"),
        ("hostname", "h\0st"),
        ("labels", {"k": "v\0"}),
    ],
)
def test_nul_byte_is_refused_at_create(hyprd: Hyprd, field: str, value: object) -> None:
    with hyprd.api() as api:
        response = api.post("/vms", json={"image": "busybox", "start": False, field: value})
    assert response.status_code == 400
    message = response.json()["message"]
    assert "NUL" in message and len(message.splitlines()) == 1
    assert hyprd.db_rows("SELECT id FROM vms") == []


def test_empty_ref_and_negative_stop_timeout_are_refused(hyprd: Hyprd) -> None:
    result = hyprd.hypr("inspect", "")
    assert result.returncode != 0 and "no such VM" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""
    with hyprd.api() as api:
        created = {"image": "busybox", "name": "x", "start": False}
        assert api.post("/vms", json=created).status_code == 201
        for timeout in ("-5", "1e9", "nan"):
            response = api.post("/vms/x/stop", params={"timeout": timeout})
            assert response.status_code == 400, timeout
            assert "timeout" in response.json()["message"]
        assert api.post("/vms/x/stop", params={"timeout": "0"}).status_code == 200


def test_rows_written_before_user_and_stop_signal_still_load() -> None:
    spec = VmSpec.from_json('{"argv": ["sh"], "env": [], "workdir": "/", "restart": "no"}')
    assert (spec.user, spec.stop_signal) == (None, None)
