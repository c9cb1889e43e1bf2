"""cloud-init user data in real microVMs: the agent's common subset in a busybox image, a
NoCloud seed in an image that has cloud-init, refusals that create nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hypr.sandbox import Hyprd, wait_for

pytestmark = pytest.mark.vm

APP_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIApp app@test"
ROOT_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIRoot root@test"

CLOUD_CONFIG = f"""#cloud-config
hostname: web1
users:
  - default
  - name: app
    uid: 1500
    ssh_authorized_keys: ["{APP_KEY}"]
ssh_authorized_keys: ["{ROOT_KEY}"]
write_files:
  - path: /etc/app/app.conf
    content: "port = 80\\n"
    permissions: '0640'
    owner: app:app
  - path: /etc/app/blob
    encoding: b64
    content: aGVsbG8K
  - path: /etc/motd
    content: "from user data\\n"
    append: true
bootcmd:
  - echo boot >> /data/boots
runcmd:
  - [sh, -c, "echo run >> /data/runs"]
network:
  version: 2
  ethernets:
    eth0:
      addresses: [10.77.0.50/24]
      gateway4: 10.77.0.1
packages: [nginx]
"""


def exec_out(hyprd: Hyprd, vm: str, *cmd: str) -> str:
    return hyprd.ok("exec", vm, "--", *cmd)


def lines_of(hyprd: Hyprd, vm: str, path: str) -> list[str]:
    result = hyprd.hypr("exec", vm, "--", "cat", path)
    return result.stdout.split() if result.returncode == 0 else []


def test_cloud_config_subset_in_an_image_without_cloud_init(hyprd: Hyprd, tmp_path: Path) -> None:
    hyprd.ok("network", "create", "lan", "--subnet", "10.77.0.0/24")
    (tmp_path / "ud.yaml").write_text(CLOUD_CONFIG)
    hyprd.ok(
        "run", "-d", "--name", "web", "--network", "lan", "-v", "state:/data",
        "--user-data", str(tmp_path / "ud.yaml"), "busybox", "sleep", "3600",
    )  # fmt: skip
    # runcmd runs beside the workload; bootcmd ran before it.
    wait_for(lambda: lines_of(hyprd, "web", "/data/runs") == ["run"])
    assert lines_of(hyprd, "web", "/data/boots") == ["boot"]
    assert exec_out(hyprd, "web", "hostname").strip() == "web1"
    stat = exec_out(hyprd, "web", "stat", "-c", "%a %U %G %n",
                    "/etc/app/app.conf", "/home/app/.ssh", "/home/app/.ssh/authorized_keys",
                    "/root/.ssh/authorized_keys")  # fmt: skip
    assert stat.splitlines() == [
        "640 app app /etc/app/app.conf",
        "700 app app /home/app/.ssh",
        "600 app app /home/app/.ssh/authorized_keys",
        "600 root root /root/.ssh/authorized_keys",
    ]
    assert exec_out(hyprd, "web", "cat", "/etc/app/app.conf") == "port = 80\n"
    assert exec_out(hyprd, "web", "cat", "/etc/app/blob") == "hello\n"
    assert exec_out(hyprd, "web", "cat", "/etc/motd").endswith("from user data\n")
    assert exec_out(hyprd, "web", "cat", "/home/app/.ssh/authorized_keys") == APP_KEY + "\n"
    assert exec_out(hyprd, "web", "cat", "/root/.ssh/authorized_keys") == ROOT_KEY + "\n"
    assert "app:x:1500:1500::/home/app:/bin/sh" in exec_out(hyprd, "web", "cat", "/etc/passwd")
    # The static address is the NIC's: configured in the guest and known to hypr.
    assert "inet 10.77.0.50/24" in exec_out(hyprd, "web", "ip", "addr", "show", "eth0")
    assert hyprd.inspect("web")["guest_ip"] == "10.77.0.50"
    # What is not applied is said in the VM's log and in hyprd's.
    assert "user data: packages is not applied" in hyprd.ok("logs", "web")
    assert "user data of VM web: packages is not applied" in hyprd.log()

    hyprd.ok("stop", "web")
    hyprd.ok("start", "web")
    wait_for(lambda: lines_of(hyprd, "web", "/data/boots") == ["boot", "boot"])
    assert lines_of(hyprd, "web", "/data/runs") == ["run"]  # once per instance
    assert exec_out(hyprd, "web", "stat", "-c", "%a %U", "/etc/app/app.conf") == "640 app\n"
    sem = exec_out(hyprd, "web", "cat", "/var/lib/cloud/instance/sem/config_scripts_user")
    assert sem.startswith("20")


def test_a_shell_script_as_user_data_runs_once(hyprd: Hyprd, tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text('#!/bin/sh\necho "ran as $(id -u)" >> /data/script\n')
    hyprd.ok("run", "-d", "--name", "s", "-v", "script:/data", "--user-data", str(script),
             "busybox", "sleep", "3600")  # fmt: skip
    wait_for(lambda: lines_of(hyprd, "s", "/data/script") == ["ran", "as", "0"])
    hyprd.ok("stop", "s")
    hyprd.ok("start", "s")
    exec_out(hyprd, "s", "true")
    assert lines_of(hyprd, "s", "/data/script") == ["ran", "as", "0"]


def test_invalid_user_data_is_refused_with_its_line(hyprd: Hyprd, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("#cloud-config\nhostname: a\nwrite_files:\n  - path: /x\n   content: [\n")
    result = hyprd.hypr("run", "-d", "--name", "bad", "--user-data", str(bad), "busybox", "true")
    assert result.returncode == 125
    assert len(result.stderr.strip().splitlines()) == 1
    assert "invalid user data: invalid cloud-config YAML: line 5" in result.stderr
    with hyprd.api() as api:
        response = api.post(
            "/vms",
            json={"image": "busybox", "name": "bad", "user_data": "#cloud-config\nruncmd: 3\n"},
        )
    assert response.status_code == 400
    assert response.json()["message"] == "invalid user data: runcmd must be a list, not 3"
    assert hyprd.ok("ps", "-a", "-q") == ""


CLOUD_INIT = """#!/bin/sh
# Stands in for cloud-init: takes the NoCloud seed it finds.
mkdir -p /run/seen && cp /var/lib/cloud/seed/nocloud/* /run/seen/
"""


def test_an_image_with_cloud_init_gets_a_nocloud_seed(hyprd: Hyprd, tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "cloud-init").write_text(CLOUD_INIT)
    (context / "cloud-init").chmod(0o755)
    (context / "Dockerfile").write_text("FROM busybox\nCOPY cloud-init /usr/bin/cloud-init\n")
    hyprd.ok("build", "-t", "with-cloud-init", str(context))
    user_data = "#cloud-config\nhostname: seeded\nwrite_files: [{path: /etc/x, content: x}]\n"
    (tmp_path / "ud.yaml").write_text(user_data)
    hyprd.ok("run", "-d", "--name", "ci", "--user-data", str(tmp_path / "ud.yaml"),
             "with-cloud-init", "sh", "-c", "/usr/bin/cloud-init; sleep 3600")  # fmt: skip
    view = hyprd.inspect("ci")
    wait_for(
        lambda: hyprd.hypr("exec", "ci", "--", "test", "-f", "/run/seen/user-data").returncode == 0
    )
    seen = {
        name: exec_out(hyprd, "ci", "cat", f"/run/seen/{name}")
        for name in ("meta-data", "user-data", "network-config")
    }
    assert yaml.safe_load(seen["meta-data"]) == {
        "instance-id": view["id"],
        "local-hostname": "seeded",
    }
    assert seen["user-data"] == user_data
    network = yaml.safe_load(seen["network-config"])
    assert network["version"] == 2
    assert network["ethernets"]["eth0"]["match"] == {"macaddress": view["guest_mac"]}
    assert network["ethernets"]["eth0"]["addresses"] == [f"{view['guest_ip']}/16"]
    # cloud-init applies the rest: the agent did not.
    assert hyprd.hypr("exec", "ci", "--", "test", "-e", "/etc/x").returncode == 1
    assert exec_out(hyprd, "ci", "hostname").strip() == "seeded"


HATCH_NETWORK = "#cloud-config\nnetwork:\n  version: 2\n  ethernets:\n    eth0:\n      dhcp4: true"


def test_hatchs_dhcp_network_config_takes_the_reserved_address(hyprd: Hyprd) -> None:
    with hyprd.api() as api:
        body = {"image": "busybox", "name": "d", "command": ["sleep", "3600"]}
        response = api.post("/vms", json={**body, "user_data": HATCH_NETWORK})
    assert response.status_code == 201, response.text
    address = hyprd.inspect("d")["guest_ip"]
    wait_for(lambda: f"inet {address}/16" in exec_out(hyprd, "d", "ip", "addr", "show", "eth0"))
    assert "udhcpc" in exec_out(hyprd, "d", "ps")
