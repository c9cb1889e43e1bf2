"""Hyperfleet's /machines and Hatch's /vms on hyprd's gateway (41001, API keys): the curl
examples of their networking pages run as written (their host and key replaced), against
real VMs on real ptp and bridge networks in the test's namespaces."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hypr.guest.assets import preferred_kernel
from hypr.sandbox import DEFAULT_ASSETS, Hyprd, connect, in_ns
from tests.conftest import links

API = "http://127.0.0.1:41001"


def curl(hyprd: Hyprd, key: str, method: str, path: str, body: str | None = None) -> Any:
    """One request as the seeds write it; returns (status, parsed body)."""
    args = ["curl", "-s", "-w", "\n%{http_code}", "-X", method, f"{API}{path}",
            "-H", "Content-Type: application/json",
            "-H", f"Authorization: Bearer {key}"]  # fmt: skip
    if body is not None:
        args += ["-d", body]
    out = in_ns(hyprd.netns, *args).stdout
    text, _, code = out.rpartition("\n")
    return int(code), json.loads(text) if text else None


def make_rootfs(directory: Path, kind: str) -> Path:
    """A root filesystem of static busybox, made without root: mkfs.ext4 -d or mksquashfs."""
    tree = directory / f"tree-{kind}"
    (tree / "bin").mkdir(parents=True)
    for sub in ("etc", "proc", "sys", "dev", "tmp", "root"):
        (tree / sub).mkdir()
    shutil.copy("/usr/bin/busybox", tree / "bin" / "busybox")
    listing = subprocess.run(["/usr/bin/busybox", "--list"], capture_output=True, text=True)
    for name in listing.stdout.split():
        if name != "busybox":
            os.symlink("busybox", tree / "bin" / name)
    (tree / "etc" / "made-by").write_text(f"the test's {kind}\n")
    if kind == "ext4":
        image = directory / "alpine-rootfs.ext4"
        subprocess.run(["mkfs.ext4", "-q", "-d", str(tree), str(image), "16M"], check=True)
    else:
        image = directory / "rootfs.squashfs"
        subprocess.run(["mksquashfs", str(tree), str(image), "-quiet", "-noappend"], check=True)
    return image


@pytest.fixture
def machines(hyprd: Hyprd) -> Path:
    """The default allowed directory with Hyperfleet's files: hypr's kernel, two roots."""
    home = hyprd.data_dir / "machines" / ".hyperfleet"
    home.mkdir(parents=True)
    shutil.copy(preferred_kernel(DEFAULT_ASSETS), home / "vmlinux")
    make_rootfs(home, "ext4")
    make_rootfs(home, "squashfs")
    return home


def key_of(hyprd: Hyprd) -> str:
    return hyprd.ok("apikey", "create", "seeds").strip()


def test_hyperfleet_machines(hyprd: Hyprd, machines: Path, make_netns: Callable[[], str]) -> None:
    key = key_of(hyprd)
    internet = make_netns()  # 8.8.8.8, with no route back: only the NAT answers
    connect(hyprd.netns, internet, "uplink", "8.8.8.1/24", "8.8.8.8/24", route=False)

    status, machine = curl(hyprd, key, "POST", "/machines", """{
    "name": "web-server",
    "vcpu_count": 2,
    "mem_size_mib": 512,
    "kernel_image_path": ".hyperfleet/vmlinux",
    "rootfs_path": ".hyperfleet/alpine-rootfs.ext4"
  }""")  # fmt: skip
    assert status == 201, machine
    assert machine["name"] == "web-server" and machine["status"] == "running"
    assert (machine["tap_ip"], machine["guest_ip"]) == ("172.16.0.1", "172.16.0.2")
    assert machine["tap_device"].startswith("tap") and machine["guest_mac"]
    assert machine["rootfs_path"] == str(machines / "alpine-rootfs.ext4")
    assert machine["kernel_image_path"] == str(machines / "vmlinux")
    mid = machine["id"]

    # ptp in the kernel: the host side on the TAP, no bridge above it
    tap = links(hyprd.netns)[machine["tap_device"]]
    assert tap["addresses"] == ["172.16.0.1/30"] and tap["master"] is None

    status, result = curl(hyprd, key, "POST", f"/machines/{mid}/exec", """{
    "cmd": ["ip", "addr", "show", "eth0"]
  }""")  # fmt: skip
    assert status == 200 and result["exit_code"] == 0
    assert "inet 172.16.0.2/30" in result["stdout"]
    status, result = curl(hyprd, key, "POST", f"/machines/{mid}/exec", """{
    "cmd": ["ping", "-c", "3", "8.8.8.8"]
  }""")  # fmt: skip
    assert result["exit_code"] == 0 and "3 packets received" in result["stdout"]
    status, result = curl(hyprd, key, "POST", f"/machines/{mid}/exec", """{
    "cmd": ["sh", "-c", "echo nameserver 8.8.8.8 > /etc/resolv.conf"]
  }""")  # fmt: skip
    assert status == 200 and result["exit_code"] == 0
    # the root is the file's (read-only below, writes in memory)
    status, result = curl(hyprd, key, "POST", f"/machines/{mid}/exec",
                          '{"cmd": ["cat", "/etc/made-by", "/etc/resolv.conf"]}')  # fmt: skip
    assert result["stdout"] == "the test's ext4\nnameserver 8.8.8.8\n"
    assert in_ns(hyprd.netns, "ping", "-c", "1", "-W", "2", "172.16.0.2").returncode == 0

    # a squashfs root with exposed ports, on the next /30; no path between the two
    status, other = curl(hyprd, key, "POST", "/machines", """{
    "name": "squashed",
    "vcpu_count": 1,
    "mem_size_mib": 256,
    "kernel_image_path": ".hyperfleet/vmlinux",
    "rootfs_path": ".hyperfleet/rootfs.squashfs",
    "exposed_ports": [80, 443, 8080]
  }""")  # fmt: skip
    assert status == 201, other
    assert (other["tap_ip"], other["guest_ip"]) == ("172.16.0.5", "172.16.0.6")
    assert other["exposed_ports"] == [80, 443, 8080]
    status, result = curl(hyprd, key, "POST", f"/machines/{other['id']}/exec",
                          '{"cmd": ["ping", "-c", "1", "-W", "1", "172.16.0.2"]}')  # fmt: skip
    assert result["exit_code"] != 0

    status, seen = curl(hyprd, key, "GET", f"/machines/{mid}")
    assert status == 200 and seen["status"] == "running" and seen["guest_ip"] == "172.16.0.2"
    for ref in (mid, other["id"]):
        assert curl(hyprd, key, "DELETE", f"/machines/{ref}")[0] == 204
    assert curl(hyprd, key, "GET", f"/machines/{mid}")[0] == 404
    assert machine["tap_device"] not in links(hyprd.netns)


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"kernel_image_path": "/etc/passwd"}, "kernel_image_path", "outside the allowed"),
        ({"kernel_image_path": "../../../../../etc/passwd"}, "kernel_image_path", "outside"),
        ({"rootfs_path": ".hyperfleet/missing.ext4"}, "rootfs_path", "does not exist"),
        ({"rootfs_path": ".hyperfleet/vmlinux"}, "rootfs_path", "neither an ext4"),
        ({"kernel_image_path": ".hyperfleet/rootfs.squashfs"}, "kernel_image_path", "kernel"),
        ({"vcpu_count": "two"}, "vcpu_count", "integer"),
        ({"exposed_ports": "80"}, "exposed_ports", "list"),
        ({"name": "no spaces allowed"}, "name", "invalid VM name"),  # after the network
    ],
)
def test_hyperfleet_bad_input_changes_nothing(
    hyprd: Hyprd, machines: Path, change: dict[str, Any], field: str, message: str
) -> None:
    body = {
        "name": "bad", "vcpu_count": 1, "mem_size_mib": 256,
        "kernel_image_path": ".hyperfleet/vmlinux",
        "rootfs_path": ".hyperfleet/alpine-rootfs.ext4", **change,
    }  # fmt: skip
    status, answer = curl(hyprd, key_of(hyprd), "POST", "/machines", json.dumps(body))
    assert status == 400 and field in answer["message"] and message in answer["message"]
    assert hyprd.ok("ps", "-a", "-q") == ""
    assert "ptp" not in hyprd.ok("network", "ls")


def test_hatch_vms(hyprd: Hyprd) -> None:
    key = key_of(hyprd)
    status, vm = curl(hyprd, key, "POST", "/vms", "{}")
    assert status == 201, vm
    assert vm["state"] == "running" and vm["enable_network"] is True
    assert vm["guest_ip"].startswith("192.168.241.") and vm["tap_name"].startswith("tap")
    assert 2200 <= vm["ssh_port"] <= 2299
    bridge = links(hyprd.netns)["fcbridge"]
    assert bridge["kind"] == "bridge" and bridge["addresses"] == ["192.168.241.1/24"]
    assert links(hyprd.netns)[vm["tap_name"]]["master"] == "fcbridge"
    # the SSH pool port reaches guest port 22 (a web server stands in for sshd)
    hyprd.ok("exec", vm["id"], "httpd", "-p", "22", "-h", "/etc")
    url = f"http://127.0.0.1:{vm['ssh_port']}/hostname"
    assert in_ns(hyprd.netns, "curl", "-sf", "--retry", "20", "--retry-connrefused", url).stdout

    status, custom = curl(hyprd, key, "POST", "/vms", """{
    "guest_ip": "192.168.241.50",
    "vcpu_count": 2,
    "mem_mib": 2048
  }""")  # fmt: skip
    assert status == 201 and custom["guest_ip"] == "192.168.241.50", custom
    assert custom["state"] == "running" and custom["ssh_port"] != vm["ssh_port"]

    status, mac = curl(hyprd, key, "POST", "/vms", """{
    "guest_mac": "02:fc:00:11:22:33",
    "vcpu_count": 1,
    "mem_mib": 512
  }""")  # fmt: skip
    assert status == 201 and mac["guest_mac"] == "02:fc:00:11:22:33", mac
    for ref in (vm["id"], custom["id"], mac["id"]):
        hyprd.ok("rm", "-f", ref)

    # the page's body, its one long line split in two here
    body = (
        '{"user_data": "#cloud-config\\nnetwork:\\n  version: 2\\n  ethernets:\\n'
        '    eth0:\\n      dhcp4: true", "vcpu_count": 1, "mem_mib": 512}'
    )
    status, cloud = curl(hyprd, key, "POST", "/vms", body)
    assert status == 201 and cloud["state"] == "running", cloud
    hyprd.ok("rm", "-f", cloud["id"])

    status, dark = curl(hyprd, key, "POST", "/vms", """{
    "enable_network": false,
    "vcpu_count": 4,
    "mem_mib": 8192
  }""")  # fmt: skip
    assert status == 201, dark
    assert dark["enable_network"] is False and dark["networks"] == []
    assert dark["guest_ip"] is None and dark["guest_mac"] is None and dark["ssh_port"] is None
    # `curl .../vms/ID | jq '.enable_network'`, as the page troubleshoots
    for field, expected in (("enable_network", "false"), ("state", '"running"')):
        out = in_ns(hyprd.netns, "sh", "-c", f"curl -s {API}/vms/{dark['id']} "
                    f"-H 'Authorization: Bearer {key}' | jq '.{field}'").stdout  # fmt: skip
        assert out.strip() == expected


def test_hatch_bad_input_changes_nothing(hyprd: Hyprd) -> None:
    key = key_of(hyprd)
    for body, field in [
        ('{"vcpu_count": "many"}', "vcpu_count"),
        ('{"enable_network": "sometimes"}', "enable_network"),
        ('{"mem_mib": 512, "disk": 10}', "disk"),
        ('{"guest_ip": "10.1.2.3"}', "192.168.241.0/24"),
        ('{"guest_mac": "not-a-mac"}', "MAC"),
    ]:
        status, answer = curl(hyprd, key, "POST", "/vms", body)
        assert 400 <= status < 500 and field in answer["message"], (body, answer)
    assert hyprd.ok("ps", "-a", "-q") == ""
